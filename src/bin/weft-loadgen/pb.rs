//! The sinks' view of the protobuf wire format: the library's field reader
//! ([`weft::data::view::Rd`]) as an iterator that reports a malformed field, so the sinks
//! can count items and find the generator's timestamps without decoding requests into
//! messages (the sink must stay much cheaper per item than what it measures).

pub use weft::data::view::Field;
use weft::data::view::Rd;

/// The fields of a message: `(number, value)`; a malformed field (or a group) yields
/// `None` and ends the iteration.
pub fn fields(buf: &[u8]) -> impl Iterator<Item = (u32, Option<Field<'_>>)> {
    let mut rd = Rd::new(buf);
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        match rd.field() {
            Ok(Some((n, f))) => Some((n, Some(f))),
            Ok(None) => None,
            Err(_) => {
                done = true;
                Some((0, None))
            }
        }
    })
}

/// A length-delimited field's payload.
pub fn len(f: Field<'_>) -> Option<&[u8]> {
    match f {
        Field::Len(b) => Some(b),
        _ => None,
    }
}
