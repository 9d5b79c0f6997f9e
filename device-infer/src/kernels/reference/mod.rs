//! The slow, obviously-correct twins of the kernels: straight loops over the definitions,
//! bounds checked per element. Never optimized; the kernels must match them bit for bit.

pub mod conv2d;
pub mod dense;
pub mod pool;
