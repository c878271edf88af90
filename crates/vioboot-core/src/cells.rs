//! Checked reading of big-endian device-tree property values (cells, strings).

use core::fmt;

/// What was wrong with a property value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CellError {
    /// The value ended before the cells it should hold.
    Truncated { need: usize, have: usize },
    /// A cell count outside what the device tree allows (1 or 2 for addresses and sizes).
    BadCellCount(u32),
    /// A string property without its terminating NUL, or not UTF-8.
    BadString,
}

impl fmt::Display for CellError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CellError::Truncated { need, have } => {
                write!(f, "truncated: needs {need} bytes, has {have}")
            }
            CellError::BadCellCount(n) => write!(f, "cell count {n} is not 1 or 2"),
            CellError::BadString => write!(f, "not a NUL-terminated UTF-8 string"),
        }
    }
}

/// A cursor over a property value that hands out big-endian cells and never reads past the end.
#[derive(Clone)]
pub struct Cells<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cells<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Cells { bytes, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// One 32-bit cell.
    pub fn u32(&mut self) -> Result<u32, CellError> {
        let end = self.pos + 4;
        let b = self.bytes.get(self.pos..end).ok_or(CellError::Truncated {
            need: end,
            have: self.bytes.len(),
        })?;
        self.pos = end;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A number made of `cells` cells (1 or 2).
    pub fn number(&mut self, cells: u32) -> Result<u64, CellError> {
        match cells {
            1 => Ok(u64::from(self.u32()?)),
            2 => {
                let hi = u64::from(self.u32()?);
                Ok(hi << 32 | u64::from(self.u32()?))
            }
            n => Err(CellError::BadCellCount(n)),
        }
    }
}

/// A property holding exactly one cell.
pub fn single_u32(bytes: &[u8]) -> Result<u32, CellError> {
    Cells::new(bytes).u32()
}

/// A property holding one NUL-terminated string.
pub fn string(bytes: &[u8]) -> Result<&str, CellError> {
    let (last, body) = bytes.split_last().ok_or(CellError::BadString)?;
    if *last != 0 {
        return Err(CellError::BadString);
    }
    core::str::from_utf8(body).map_err(|_| CellError::BadString)
}

/// A string-list property (`compatible`): NUL-separated strings.
pub fn string_list(bytes: &[u8]) -> impl Iterator<Item = &str> {
    bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .filter_map(|s| core::str::from_utf8(s).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cells_and_numbers() {
        let v = [0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        let mut c = Cells::new(&v);
        assert_eq!(c.u32(), Ok(1));
        assert_eq!(c.number(2), Ok(0x2_0000_0003));
        assert!(c.is_empty());
        assert_eq!(c.u32(), Err(CellError::Truncated { need: 16, have: 12 }));
    }

    #[test]
    fn rejects_bad_cell_counts_and_strings() {
        assert_eq!(
            Cells::new(&[0; 16]).number(3),
            Err(CellError::BadCellCount(3))
        );
        assert_eq!(string(b"hvterm1\0"), Ok("hvterm1"));
        assert_eq!(string(b"hvterm1"), Err(CellError::BadString));
        assert_eq!(string(b""), Err(CellError::BadString));
        let list: std::vec::Vec<&str> = string_list(b"IBM,vty\0hvterm1\0").collect();
        assert_eq!(list, ["IBM,vty", "hvterm1"]);
    }
}
