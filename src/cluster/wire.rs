//! The byte layout shared by the cluster's messages and the records they carry: little-endian
//! integers and length-prefixed byte strings. Reading never trusts a length: a truncated or
//! hostile message is an error, never a panic or a huge allocation.

use crate::reply::Reply;

#[derive(Default)]
pub struct Writer {
    pub bytes: Vec<u8>,
}

impl Writer {
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.bytes.push(v);
        self
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A length (lengths past u32 never occur: frames are tens of KiB, a record is bounded by
    /// what a frame may carry).
    pub fn len(&mut self, n: usize) -> &mut Self {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX))
    }

    pub fn blob(&mut self, v: &[u8]) -> &mut Self {
        self.len(v.len());
        self.bytes.extend_from_slice(v);
        self
    }

    pub fn text(&mut self, v: &str) -> &mut Self {
        self.blob(v.as_bytes())
    }

    pub fn texts(&mut self, v: &[String]) -> &mut Self {
        self.len(v.len());
        for s in v {
            self.text(s);
        }
        self
    }
}

impl Writer {
    /// A reply (RG.GETEXECUTION's plans cross as replies).
    pub fn reply(&mut self, reply: &Reply) -> &mut Self {
        match reply {
            Reply::Simple(s) => self.u8(1).text(s),
            Reply::Error(s) => self.u8(2).text(s),
            Reply::Bulk(b) => self.u8(3).blob(b),
            Reply::Int(n) => self.u8(4).u64(*n as u64),
            Reply::Double(d) => self.u8(5).u64(d.to_bits()),
            Reply::Null => self.u8(6),
            Reply::Array(items) => {
                self.u8(7).len(items.len());
                for item in items {
                    self.reply(item);
                }
                self
            }
        }
    }
}

/// How deep a reply read from a peer may nest (plans nest four deep).
const REPLY_DEPTH: usize = 16;

pub struct Reader<'a> {
    rest: &'a [u8],
}

pub const TRUNCATED: &str = "a truncated message";

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.rest.len() {
            return Err(TRUNCATED.to_owned());
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    pub fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Result<u64, String> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    /// A count of items still to read, each at least `min_size` bytes: bounded by what is left,
    /// so that a hostile count cannot make the reader reserve memory for items that are not there.
    pub fn count(&mut self, min_size: usize) -> Result<usize, String> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_size.max(1)) > self.rest.len() {
            return Err(TRUNCATED.to_owned());
        }
        Ok(n)
    }

    pub fn blob(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    pub fn text(&mut self) -> Result<String, String> {
        String::from_utf8(self.blob()?.to_vec()).map_err(|_| "a text that is not UTF-8".to_owned())
    }

    pub fn texts(&mut self) -> Result<Vec<String>, String> {
        let n = self.count(4)?;
        (0..n).map(|_| self.text()).collect()
    }

    pub fn reply(&mut self) -> Result<Reply, String> {
        self.reply_within(REPLY_DEPTH)
    }

    fn reply_within(&mut self, depth: usize) -> Result<Reply, String> {
        let depth = depth.checked_sub(1).ok_or("a reply nested too deep")?;
        Ok(match self.u8()? {
            1 => Reply::Simple(self.text()?),
            2 => Reply::Error(self.text()?),
            3 => Reply::Bulk(self.blob()?.to_vec()),
            4 => Reply::Int(self.u64()? as i64),
            5 => Reply::Double(f64::from_bits(self.u64()?)),
            6 => Reply::Null,
            7 => {
                let n = self.count(1)?;
                Reply::Array((0..n).map(|_| self.reply_within(depth)).collect::<Result<_, _>>()?)
            }
            other => return Err(format!("a reply of unknown type {other}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back() {
        let mut w = Writer::default();
        w.u8(7).u32(70_000).u64(u64::MAX).text("é").texts(&["a".to_owned(), String::new()]);
        let mut r = Reader::new(&w.bytes);
        assert_eq!(r.u8(), Ok(7));
        assert_eq!(r.u32(), Ok(70_000));
        assert_eq!(r.u64(), Ok(u64::MAX));
        assert_eq!(r.text().as_deref(), Ok("é"));
        assert_eq!(r.texts(), Ok(vec!["a".to_owned(), String::new()]));
        assert!(r.is_empty());
    }

    #[test]
    fn replies_read_back_and_hostile_nesting_is_refused() {
        let reply = Reply::Array(vec![
            Reply::ok(),
            Reply::Error("ERR x".into()),
            Reply::bulk("b"),
            Reply::Int(-3),
            Reply::Double(0.5),
            Reply::Null,
            Reply::Array(vec![]),
        ]);
        let mut w = Writer::default();
        w.reply(&reply);
        assert_eq!(Reader::new(&w.bytes).reply(), Ok(reply));
        let mut deep = Reply::Null;
        for _ in 0..REPLY_DEPTH {
            deep = Reply::Array(vec![deep]);
        }
        let mut w = Writer::default();
        w.reply(&deep);
        assert!(Reader::new(&w.bytes).reply().is_err());
    }

    #[test]
    fn hostile_lengths_are_errors() {
        assert!(Reader::new(&[1, 0, 0]).u32().is_err());
        assert!(Reader::new(&[0xff, 0xff, 0xff, 0xff, b'a']).blob().is_err());
        assert!(Reader::new(&[0xff, 0xff, 0xff, 0x7f]).count(1).is_err());
        assert!(Reader::new(&[1, 0, 0, 0, 0xff]).text().is_err());
    }
}
