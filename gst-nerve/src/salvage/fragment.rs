//! RTP packets of H.264 and the one decision `nervesalvage` makes: which fragmentation unit
//! (FU-A, RFC 6184 5.8) lost its later fragments, so that what arrived of it can be closed and
//! decoded instead of dropped.
//!
//! A depayloader that sees a sequence-number gap inside a fragmented NAL unit throws the whole
//! unit away (`rtph264depay` clears its adapter on DISCONT). The fragments before the gap are a
//! valid prefix of the slice: its header and its first macroblocks, which a decoder decodes up to
//! the cut and conceals from there. Closing the prefix (setting the FU end bit on the last
//! fragment that arrived) keeps those macroblocks.

/// The fixed part of an RTP packet that the decision needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rtp {
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    /// Byte offset of the payload in the packet.
    pub payload: usize,
    /// The payload's length (padding excluded).
    pub payload_len: usize,
}

/// NAL unit type of an FU-A packet's payload indicator.
const FU_A: u8 = 28;
const FU_START: u8 = 0x80;
const FU_END: u8 = 0x40;
/// The marker bit in the RTP header's second byte.
const MARKER: u8 = 0x80;

impl Rtp {
    /// Parses an RTP header (RFC 3550 5.1): version 2, CSRCs, header extension, padding. None for
    /// anything that is not a whole RTP packet.
    pub fn parse(data: &[u8]) -> Option<Self> {
        if data.len() < 12 || data[0] >> 6 != 2 {
            return None;
        }
        let csrcs = (data[0] & 0x0f) as usize;
        let mut payload = 12 + 4 * csrcs;
        if data[0] & 0x10 != 0 {
            let ext = data.get(payload + 2..payload + 4)?;
            payload += 4 + 4 * u16::from_be_bytes([ext[0], ext[1]]) as usize;
        }
        let padding = if data[0] & 0x20 != 0 { *data.last()? as usize } else { 0 };
        let payload_len = data.len().checked_sub(payload)?.checked_sub(padding)?;
        Some(Self {
            seq: u16::from_be_bytes([data[2], data[3]]),
            timestamp: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
            marker: data[1] & MARKER != 0,
            payload,
            payload_len,
        })
    }

    /// What kind of H.264 payload this is, from its first two bytes.
    pub fn fragment(&self, data: &[u8]) -> Fragment {
        // `data` is the packet `parse` read; anything shorter is no fragment.
        match data.get(self.payload..self.payload + self.payload_len).unwrap_or_default() {
            [indicator, header, ..] if indicator & 0x1f == FU_A => match (header & FU_START != 0, header & FU_END != 0) {
                (_, true) => Fragment::Last,
                (true, false) => Fragment::First,
                (false, false) => Fragment::Middle,
            },
            _ => Fragment::Whole,
        }
    }
}

/// An H.264 RTP payload as far as fragmentation goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    /// A whole NAL unit, an aggregation packet, or anything not an FU-A.
    Whole,
    /// FU-A with the start bit.
    First,
    /// FU-A with neither bit.
    Middle,
    /// FU-A with the end bit (start bit or not).
    Last,
}

/// Closes a packet as the last fragment of its unit: sets the FU end bit, and the RTP marker
/// when the access unit ended among the lost packets. `data` is the packet that [`Rtp::parse`]
/// read.
pub fn close(data: &mut [u8], rtp: &Rtp, marker: bool) {
    if let Some(header) = data.get_mut(rtp.payload + 1) {
        *header |= FU_END;
    }
    if marker && let Some(byte) = data.get_mut(1) {
        *byte |= MARKER;
    }
}

/// What to send on, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Out<T> {
    /// Unchanged.
    Pass(T),
    /// The last fragment that arrived of a unit whose later fragments were lost: to be
    /// [`close`]d (with the marker when `marker`) before it goes on.
    Close { packet: T, rtp: Rtp, marker: bool },
}

/// Holds the latest fragment of an unfinished unit until the next packet says whether its
/// successor arrived. Nothing else waits, and a held fragment is never the last packet of an
/// access unit (that one carries the end bit), so no frame is delayed.
#[derive(Debug)]
pub struct Salvager<T> {
    held: Option<(T, Rtp)>,
    /// Units closed early so far.
    pub closed: u64,
}

impl<T> Default for Salvager<T> {
    fn default() -> Self {
        Self { held: None, closed: 0 }
    }
}

impl<T> Salvager<T> {
    /// One packet in; what goes out now. `parsed` is None for a packet that is not RTP: it goes
    /// through as it is, after anything held.
    pub fn packet(&mut self, packet: T, parsed: Option<(Rtp, Fragment)>) -> Vec<Out<T>> {
        let mut out = Vec::with_capacity(2);
        if let Some((held, h)) = self.held.take() {
            match parsed {
                // A gap after an unfinished fragment (the sequence number jumped ahead, across
                // its wrap too): its successors were lost. If the next packet belongs to another
                // access unit, this unit's last packet (the marker) was among them.
                Some((rtp, _)) if rtp.seq.wrapping_sub(h.seq) as i16 > 1 => {
                    out.push(self.close(held, h, rtp.timestamp != h.timestamp))
                }
                // The successor, or a duplicate or late packet, which says nothing about a loss.
                Some(_) => out.push(Out::Pass(held)),
                // Not RTP: nothing is known about the successor; the depayloader decides as ever.
                None => out.push(Out::Pass(held)),
            }
        }
        match parsed {
            Some((rtp, Fragment::First | Fragment::Middle)) => self.held = Some((packet, rtp)),
            _ => out.push(Out::Pass(packet)),
        }
        out
    }

    /// A loss reported before the next packet (`GstRTPPacketLost`): the held fragment's
    /// successor is gone.
    pub fn lost(&mut self) -> Option<Out<T>> {
        let (held, h) = self.held.take()?;
        Some(self.close(held, h, false))
    }

    /// End of stream: the held fragment's successors will never come; its access unit ends here.
    pub fn finish(&mut self) -> Option<Out<T>> {
        let (held, h) = self.held.take()?;
        Some(self.close(held, h, true))
    }

    /// The held fragment as it is (a new stream or segment starts: it belongs to the old one).
    pub fn release(&mut self) -> Option<T> {
        self.held.take().map(|(t, _)| t)
    }

    /// Flushing: the held fragment is dropped with everything else in flight.
    pub fn forget(&mut self) {
        self.held = None;
    }

    fn close(&mut self, packet: T, rtp: Rtp, marker: bool) -> Out<T> {
        self.closed += 1;
        Out::Close { packet, rtp, marker }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RTP packet with an FU-A payload (or a single NAL unit when `fu` is None).
    fn packet(seq: u16, ts: u32, marker: bool, fu: Option<(bool, bool)>) -> Vec<u8> {
        let mut p = vec![0x80, if marker { 0xe0 } else { 0x60 }];
        p.extend(seq.to_be_bytes());
        p.extend(ts.to_be_bytes());
        p.extend([0, 0, 0, 1]);
        match fu {
            Some((s, e)) => p.extend([0x7c, 0x01 | if s { FU_START } else { 0 } | if e { FU_END } else { 0 }, 0xaa, 0xbb]),
            None => p.extend([0x41, 0x9a, 0xcc]),
        }
        p
    }

    fn parsed(p: &[u8]) -> Rtp {
        Rtp::parse(p).expect("a test packet") // ok: the tests build whole RTP packets
    }

    fn feed(s: &mut Salvager<u16>, p: &[u8]) -> Vec<Out<u16>> {
        let rtp = parsed(p);
        s.packet(rtp.seq, Some((rtp, rtp.fragment(p))))
    }

    fn passed(out: &[Out<u16>]) -> Vec<u16> {
        out.iter().map(|o| match o { Out::Pass(t) | Out::Close { packet: t, .. } => *t }).collect()
    }

    #[test]
    fn parses_headers_with_csrcs_extension_and_padding() {
        let mut p = packet(7, 90, true, Some((true, false)));
        assert_eq!(parsed(&p).payload, 12);
        assert_eq!(parsed(&p).fragment(&p), Fragment::First);
        // One CSRC, a one-word extension, two bytes of padding.
        p[0] = 0x80 | 0x20 | 0x10 | 1;
        p.splice(12..12, [0, 0, 0, 9, 0xbe, 0xde, 0, 1, 1, 2, 3, 4]);
        p.extend([0, 2]);
        let rtp = parsed(&p);
        assert_eq!((rtp.seq, rtp.timestamp, rtp.marker, rtp.payload, rtp.payload_len), (7, 90, true, 24, 4));
        assert_eq!(rtp.fragment(&p), Fragment::First);
        assert_eq!(Rtp::parse(&p[..11]), None);
        assert_eq!(Rtp::parse(&[0x40; 20]), None, "version 1");
    }

    #[test]
    fn an_unbroken_stream_goes_through_unchanged_and_in_order() {
        let mut s = Salvager::default();
        let mut out = Vec::new();
        for (seq, fu) in [(1, None), (2, Some((true, false))), (3, Some((false, false))), (4, Some((false, true))), (5, None)] {
            out.extend(feed(&mut s, &packet(seq, 0, false, fu)));
        }
        assert_eq!(passed(&out), vec![1, 2, 3, 4, 5]);
        assert!(out.iter().all(|o| matches!(o, Out::Pass(_))));
        assert_eq!(s.closed, 0);
    }

    #[test]
    fn a_gap_closes_the_fragment_before_it_with_the_marker_only_across_access_units() {
        let mut s = Salvager::default();
        assert!(feed(&mut s, &packet(1, 0, false, Some((true, false)))).is_empty(), "held");
        assert_eq!(passed(&feed(&mut s, &packet(2, 0, false, Some((false, false))))), vec![1]);
        // 3 lost; 4 is the same unit's next fragment in the same access unit.
        let out = feed(&mut s, &packet(4, 0, false, Some((false, false))));
        assert!(matches!(out[..], [Out::Close { packet: 2, marker: false, .. }]), "{out:?}");
        // 5 lost (the marker); 6 starts the next access unit.
        let out = feed(&mut s, &packet(6, 3000, false, None));
        assert!(matches!(out[..], [Out::Close { packet: 4, marker: true, .. }, Out::Pass(6)]), "{out:?}");
        assert_eq!(s.closed, 2);
    }

    #[test]
    fn only_a_jump_ahead_is_a_loss_across_the_wrap_too() {
        let mut s = Salvager::default();
        feed(&mut s, &packet(65535, 0, false, Some((true, false))));
        assert_eq!(feed(&mut s, &packet(0, 0, false, Some((false, false)))), vec![Out::Pass(65535)], "0 follows 65535");
        // A duplicate of 0 and a late 65534: nothing lost, nothing closed.
        assert_eq!(feed(&mut s, &packet(0, 0, false, Some((false, false)))), vec![Out::Pass(0)]);
        assert_eq!(feed(&mut s, &packet(65534, 0, false, None)), vec![Out::Pass(0), Out::Pass(65534)]);
        assert_eq!(s.closed, 0);
        feed(&mut s, &packet(1, 0, false, Some((false, false))));
        let out = feed(&mut s, &packet(3, 0, false, None));
        assert!(matches!(out[..], [Out::Close { packet: 1, marker: false, .. }, Out::Pass(3)]), "{out:?}");
    }

    #[test]
    fn closing_sets_the_end_bit_and_the_marker() {
        let mut p = packet(9, 0, false, Some((false, false)));
        let rtp = parsed(&p);
        close(&mut p, &rtp, true);
        let again = parsed(&p);
        assert!(again.marker);
        assert_eq!(again.fragment(&p), Fragment::Last);
        assert_eq!(&p[14..], &[0xaa, 0xbb], "payload bytes untouched");
    }

    #[test]
    fn reported_loss_end_of_stream_and_flush() {
        let mut s = Salvager::default();
        feed(&mut s, &packet(1, 0, false, Some((true, false))));
        assert!(matches!(s.lost(), Some(Out::Close { packet: 1, marker: false, .. })));
        assert!(s.lost().is_none());
        feed(&mut s, &packet(2, 0, false, Some((true, false))));
        assert!(matches!(s.finish(), Some(Out::Close { packet: 2, marker: true, .. })));
        feed(&mut s, &packet(3, 0, false, Some((true, false))));
        s.forget();
        assert!(s.finish().is_none());
        // Not RTP: goes through after the held fragment, which goes on unchanged.
        feed(&mut s, &packet(4, 0, false, Some((true, false))));
        let out = s.packet(99, None);
        assert_eq!(out, vec![Out::Pass(4), Out::Pass(99)]);
    }
}
