//! From records to rows ready to send: the columns mapped onto canonical fields, every row
//! normalised and checked against the target's rules (in parallel), generated passwords.

pub mod mapping;
pub mod passwords;
pub mod validate;

pub use mapping::{Mapping, MappingOptions};
pub use passwords::PasswordKey;
pub use validate::{Checked, UNIDENTIFIED_PREFIX, Validator};
