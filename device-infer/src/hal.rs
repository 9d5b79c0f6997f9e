//! embedded-hal 1.0 glue (`hal` feature): what a firmware author wires between a sensor, the
//! model and the board.
//!
//! - [`read_frame`]: one SPI transaction (a command, then the frame's raw u8 pixels) straight
//!   into the model's input slot in the arena, quantized in place: no frame buffer of its own.
//! - [`classify_frame`]: read, run, and return the class with its int8 outputs.
//! - [`show_one_hot`] / [`show_binary`]: signal a class on output pins (one LED per class, or
//!   the class number in binary, least significant pin first).
//!
//! ```ignore
//! let class = device_infer::hal::classify_frame(&model, &mut spi, &[0x03], &mut arena)?.class;
//! device_infer::hal::show_binary(&mut leds, class)?;
//! ```

use core::fmt;

use embedded_hal::digital::OutputPin;
use embedded_hal::spi::{Operation, SpiDevice};

use crate::model::{Error, Model, argmax};

/// A failure of the sensor bus or of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HalError<E> {
    /// The SPI transaction failed.
    Spi(E),
    /// The model could not run (e.g. an arena that is too small).
    Model(Error),
}

impl<E: fmt::Debug> fmt::Display for HalError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HalError::Spi(e) => write!(f, "SPI transfer failed: {e:?}"),
            HalError::Model(e) => write!(f, "{e}"),
        }
    }
}

/// What [`classify_frame`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prediction<'b> {
    /// Index of the largest output.
    pub class: usize,
    /// The int8 outputs (in the arena).
    pub outputs: &'b [i8],
}

/// Reads one frame (`H * W * C` raw u8 pixels, HWC, the order the sensor streams them) with
/// one SPI transaction, `command` written first (empty for a sensor that needs none), into
/// the model's input slot of `arena`, and quantizes it there.
pub fn read_frame<S: SpiDevice>(
    model: &Model,
    spi: &mut S,
    command: &[u8],
    arena: &mut [i8],
) -> Result<(), HalError<S::Error>> {
    let slot = model.input_slot(arena).map_err(HalError::Model)?;
    let raw: &mut [u8] = bytemuck::cast_slice_mut(slot);
    if command.is_empty() {
        spi.transaction(&mut [Operation::Read(raw)])
    } else {
        spi.transaction(&mut [Operation::Write(command), Operation::Read(raw)])
    }
    .map_err(HalError::Spi)?;
    for v in slot.iter_mut() {
        *v = model.quantize_pixel(*v as u8);
    }
    Ok(())
}

/// [`read_frame`], then the model: the predicted class and the int8 outputs.
pub fn classify_frame<'b, S: SpiDevice>(
    model: &Model,
    spi: &mut S,
    command: &[u8],
    arena: &'b mut [i8],
) -> Result<Prediction<'b>, HalError<S::Error>> {
    read_frame(model, spi, command, arena)?;
    let outputs = model
        .run_in_place(arena, |_, _| {})
        .map_err(HalError::Model)?;
    Ok(Prediction {
        class: argmax(outputs),
        outputs,
    })
}

/// Drives `pins[class]` high and every other pin low (one LED per class). A class without a
/// pin leaves all pins low.
pub fn show_one_hot<P: OutputPin>(pins: &mut [P], class: usize) -> Result<(), P::Error> {
    for (i, pin) in pins.iter_mut().enumerate() {
        if i == class {
            pin.set_high()?;
        } else {
            pin.set_low()?;
        }
    }
    Ok(())
}

/// Shows `class` in binary, `pins[0]` the least significant bit (4 pins cover 10 digits).
pub fn show_binary<P: OutputPin>(pins: &mut [P], class: usize) -> Result<(), P::Error> {
    for (bit, pin) in pins.iter_mut().enumerate() {
        if bit < usize::BITS as usize && (class >> bit) & 1 == 1 {
            pin.set_high()?;
        } else {
            pin.set_low()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::spec;
    use crate::writer::{AlignedBytes, write};
    use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction as PinTx};
    use embedded_hal_mock::eh1::spi::{Mock as SpiMock, Transaction as SpiTx};

    fn frame() -> Vec<u8> {
        (0..36).map(|i| (i * 7 % 256) as u8).collect()
    }

    #[test]
    fn classifies_a_frame_read_over_spi_like_the_host_path() {
        let file = AlignedBytes::new(&write(&spec()));
        let m = Model::from_bytes(file.as_bytes()).unwrap();
        // The same frame through quantize_input + run.
        let mut x = vec![0i8; 36];
        m.quantize_input(&frame(), &mut x).unwrap();
        let mut arena = vec![0i8; m.arena_len()];
        let want = m.run(&x, &mut arena).unwrap().to_vec();

        let mut spi = SpiMock::new(&[
            SpiTx::transaction_start(),
            SpiTx::write_vec(vec![0x03]),
            SpiTx::read_vec(frame()),
            SpiTx::transaction_end(),
        ]);
        let mut arena = vec![0i8; m.arena_len()];
        let p = classify_frame(&m, &mut spi, &[0x03], &mut arena).unwrap();
        assert_eq!(p.outputs, &want[..]);
        assert_eq!(p.class, argmax(&want));
        spi.done();

        // No command: a read-only transaction.
        let mut spi = SpiMock::new(&[
            SpiTx::transaction_start(),
            SpiTx::read_vec(frame()),
            SpiTx::transaction_end(),
        ]);
        read_frame(&m, &mut spi, &[], &mut arena).unwrap();
        assert_eq!(&arena[..36], &x[..]);
        spi.done();
    }

    #[test]
    fn bus_and_arena_errors_are_reported() {
        let file = AlignedBytes::new(&write(&spec()));
        let m = Model::from_bytes(file.as_bytes()).unwrap();
        let mut small = vec![0i8; m.arena_len() - 1];
        let mut spi = SpiMock::new(&[]);
        let e = read_frame(&m, &mut spi, &[1], &mut small).unwrap_err();
        assert!(
            matches!(e, HalError::Model(Error::ArenaTooSmall { .. })),
            "{e:?}"
        );
        spi.done();

        // The mock cannot fail a transfer; a bus that always times out can.
        struct DeadBus;
        impl embedded_hal::spi::ErrorType for DeadBus {
            type Error = embedded_hal::spi::ErrorKind;
        }
        impl SpiDevice for DeadBus {
            fn transaction(&mut self, _: &mut [Operation<'_, u8>]) -> Result<(), Self::Error> {
                Err(embedded_hal::spi::ErrorKind::Other)
            }
        }
        let mut arena = vec![0i8; m.arena_len()];
        let e = classify_frame(&m, &mut DeadBus, &[], &mut arena).unwrap_err();
        assert_eq!(e, HalError::Spi(embedded_hal::spi::ErrorKind::Other));
        assert!(e.to_string().contains("SPI transfer failed"), "{e}");
    }

    #[test]
    fn pins_show_the_class() {
        let mut pins: Vec<PinMock> = (0..4)
            .map(|bit| {
                let state = if (6 >> bit) & 1 == 1 {
                    State::High
                } else {
                    State::Low
                };
                PinMock::new(&[PinTx::set(state)])
            })
            .collect();
        show_binary(&mut pins, 6).unwrap();
        pins.iter_mut().for_each(PinMock::done);

        let mut leds: Vec<PinMock> = (0..10)
            .map(|i| PinMock::new(&[PinTx::set(if i == 7 { State::High } else { State::Low })]))
            .collect();
        show_one_hot(&mut leds, 7).unwrap();
        leds.iter_mut().for_each(PinMock::done);
    }
}
