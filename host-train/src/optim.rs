//! The seed's optimizers and learning-rate schedules, on burn's optimizers.
//!
//! Hyper-parameters follow PyTorch's defaults (the reference the benchmarks compare with), not
//! burn's where they differ: Adam and RMSprop epsilon 1e-8, momentum 0.9 without dampening,
//! RMSprop without momentum.

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdaGradConfig, AdamConfig, ModuleOptimizer, RmsPropConfig, SgdConfig};

/// `--optimizer`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// Plain stochastic gradient descent.
    Sgd,
    /// SGD with momentum 0.9 (PyTorch's formulation, no dampening).
    Momentum,
    /// Adam (beta 0.9 / 0.999, epsilon 1e-8).
    Adam,
    /// AdaGrad.
    Adagrad,
    /// RMSprop (alpha 0.99, epsilon 1e-8, no momentum).
    Rmsprop,
}

impl OptimizerKind {
    /// A learning rate that works for LeNet-style networks on MNIST with this optimizer.
    pub fn default_lr(self) -> f64 {
        match self {
            OptimizerKind::Sgd => 0.1,
            OptimizerKind::Momentum => 0.01,
            OptimizerKind::Adam | OptimizerKind::Rmsprop => 1e-3,
            OptimizerKind::Adagrad => 0.01,
        }
    }

    /// Builds the optimizer. `weight_decay` is an L2 penalty added to the gradient
    /// (`grad + wd * w`), as in PyTorch's `weight_decay`.
    pub fn build(self, weight_decay: f64) -> ModuleOptimizer {
        let wd = (weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay as f32));
        match self {
            OptimizerKind::Sgd => SgdConfig::new().with_weight_decay(wd).init(),
            OptimizerKind::Momentum => SgdConfig::new()
                .with_weight_decay(wd)
                .with_momentum(Some(MomentumConfig {
                    momentum: 0.9,
                    dampening: 0.0,
                    nesterov: false,
                }))
                .init(),
            OptimizerKind::Adam => AdamConfig::new()
                .with_epsilon(1e-8)
                .with_weight_decay(wd)
                .init(),
            OptimizerKind::Adagrad => AdaGradConfig::new().with_weight_decay(wd).init(),
            OptimizerKind::Rmsprop => RmsPropConfig::new()
                .with_epsilon(1e-8)
                .with_momentum(0.0)
                .with_weight_decay(wd)
                .init(),
        }
    }
}

impl std::fmt::Display for OptimizerKind {
    /// The `--optimizer` name.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use clap::ValueEnum as _;
        let v = self.to_possible_value().expect("no skipped variants");
        f.write_str(v.get_name())
    }
}

/// `--schedule`: how the learning rate moves over the run.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// The same rate throughout.
    Constant,
    /// `lr * decay^(iteration / iterations_per_epoch)`: multiplied by `--lr-decay` once per
    /// epoch, smoothly.
    ExpDecay,
    /// Cosine annealing from `lr` to 0 over the run: `lr * (1 + cos(pi * t / T)) / 2`.
    Cosine,
}

impl Schedule {
    /// The learning rate at `iteration` (0-based) of `total`.
    pub fn lr(
        self,
        base: f64,
        decay: f64,
        iteration: usize,
        per_epoch: usize,
        total: usize,
    ) -> f64 {
        match self {
            Schedule::Constant => base,
            Schedule::ExpDecay => base * decay.powf(iteration as f64 / per_epoch.max(1) as f64),
            Schedule::Cosine => {
                let t = iteration as f64 / total.max(1) as f64;
                base * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        assert_eq!(Schedule::Constant.lr(0.1, 0.5, 77, 10, 100), 0.1);
        assert!((Schedule::ExpDecay.lr(0.1, 0.5, 20, 10, 100) - 0.025).abs() < 1e-15);
        assert!((Schedule::ExpDecay.lr(0.1, 0.5, 5, 10, 100) - 0.1 * 0.5f64.sqrt()).abs() < 1e-15);
        assert_eq!(Schedule::Cosine.lr(0.1, 0.5, 0, 10, 100), 0.1);
        assert!((Schedule::Cosine.lr(0.1, 0.5, 50, 10, 100) - 0.05).abs() < 1e-15);
        assert!(Schedule::Cosine.lr(0.1, 0.5, 100, 10, 100).abs() < 1e-15);
    }
}
