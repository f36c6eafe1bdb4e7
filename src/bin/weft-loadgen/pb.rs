//! Just enough of the protobuf wire format for the sinks to count items and find the
//! generator's timestamps without decoding requests into messages (the sink must stay much
//! cheaper per item than what it measures).

/// One protobuf field value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32,
    Len(&'a [u8]),
}

impl<'a> Field<'a> {
    pub fn len_value(self) -> Option<&'a [u8]> {
        match self {
            Field::Len(b) => Some(b),
            _ => None,
        }
    }
    pub fn fixed64(self) -> Option<u64> {
        match self {
            Field::Fixed64(v) => Some(v),
            _ => None,
        }
    }
}

/// The fields of a message: `(number, value)`; a malformed field yields `None` and ends.
pub fn fields(mut buf: &[u8]) -> impl Iterator<Item = (u64, Option<Field<'_>>)> {
    fn varint(buf: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = buf.split_first()?;
            *buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }
    let mut done = false;
    std::iter::from_fn(move || {
        if done || buf.is_empty() {
            return None;
        }
        let mut next = || -> Option<(u64, Field<'_>)> {
            let key = varint(&mut buf)?;
            let value = match key & 7 {
                0 => Field::Varint(varint(&mut buf)?),
                1 => {
                    let (v, rest) = buf.split_first_chunk::<8>()?;
                    buf = rest;
                    Field::Fixed64(u64::from_le_bytes(*v))
                }
                2 => {
                    let len = usize::try_from(varint(&mut buf)?).ok()?;
                    let (v, rest) = buf.split_at_checked(len)?;
                    buf = rest;
                    Field::Len(v)
                }
                5 => {
                    buf = buf.get(4..)?;
                    Field::Fixed32
                }
                _ => return None,
            };
            Some((key >> 3, value))
        };
        match next() {
            Some((n, v)) => Some((n, Some(v))),
            None => {
                done = true;
                Some((0, None))
            }
        }
    })
}
