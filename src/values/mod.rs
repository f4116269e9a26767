//! Pure normalisers: a raw cell in, a canonical value or a message a person can act on out.
//! Every one is idempotent: normalising a normalised value changes nothing.

pub mod country;
mod email;
pub mod phone;
mod role;
mod text;

pub use email::email;
pub use role::{Conventions, role, role_key};
pub use text::{clean, cleaned, damage, is_direction_control, status};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalising_twice_equals_once() {
        for raw in [" A@B.io ", "+1 415 555 0123", "00 33 1 23 45 67 89"] {
            if let Ok(once) = email(raw) {
                assert_eq!(email(&once).unwrap(), once);
            }
        }
        assert_eq!(clean(&clean(" x\u{a0}")), clean(" x\u{a0}"));
    }
}
