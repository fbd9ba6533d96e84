//! The expected frame timestamps of a constant-rate stream, and which of them never arrived.
//!
//! A decoder that lost a whole frame simply outputs nothing for it: the only trace is a jump in
//! the timestamps (or a GAP event). The element outputs one frame per expected timestamp, so it
//! needs the slots that were skipped.

use gst::ClockTime;

/// More missing frames than this in one jump is a timestamp discontinuity, not loss: nothing is
/// synthesised for it (a few seconds at usual frame rates).
pub const MAX_MISSING: u64 = 150;

#[derive(Debug, Clone)]
pub struct Timeline {
    frame: ClockTime,
    next: Option<ClockTime>,
}

impl Timeline {
    pub fn new(frame: ClockTime) -> Self {
        Self { frame, next: None }
    }

    pub fn frame(&self) -> ClockTime {
        self.frame
    }

    /// Forgets the position: the next frame starts a new sequence (flush, discontinuity).
    pub fn reset(&mut self) {
        self.next = None;
    }

    /// Timestamps of the expected frames strictly before `pts` that never arrived, and moves the
    /// position past `pts`. A frame at most half a frame early or late counts as on time.
    pub fn arrive(&mut self, pts: ClockTime) -> Vec<ClockTime> {
        let missing = self.missing_until(pts);
        self.next = Some(pts + self.frame);
        missing
    }

    /// Expected slots before `end` (a GAP event's end, or a frame's timestamp) that have not
    /// arrived; moves the position to the first slot at or after `end`.
    pub fn missing_until(&mut self, end: ClockTime) -> Vec<ClockTime> {
        let Some(mut next) = self.next else { return Vec::new() };
        let half = self.frame / 2;
        if self.frame.is_zero() || end < next + half {
            return Vec::new();
        }
        let count = (end - next + half).nseconds() / self.frame.nseconds();
        if count > MAX_MISSING {
            self.next = None;
            return Vec::new();
        }
        let mut out = Vec::with_capacity(count as usize);
        for _ in 0..count {
            out.push(next);
            next += self.frame;
        }
        self.next = Some(next);
        out
    }

    /// Whether a frame at `pts` continues the sequence: not earlier than the next expected slot
    /// (within half a frame) and at most [`MAX_MISSING`] slots after it. A DISCONT frame that
    /// does is data lost upstream, not a new stream.
    pub fn continues(&self, pts: ClockTime) -> bool {
        let Some(next) = self.next else { return false };
        let half = self.frame / 2;
        if self.frame.is_zero() || pts + half < next {
            return false;
        }
        (pts + half).saturating_sub(next).nseconds() / self.frame.nseconds() <= MAX_MISSING
    }

    /// Whether a frame at `pts` is for the slot just shown again (within half a frame): a decoder
    /// that outputs two frames for one timestamp. Further back is a new sequence, not a repeat.
    pub fn repeats(&self, pts: ClockTime) -> bool {
        let Some(next) = self.next else { return false };
        let half = self.frame / 2;
        !self.frame.is_zero() && pts + half < next && pts + self.frame + half >= next
    }

    /// The next expected timestamp, for a frame that arrives without one.
    pub fn next_slot(&self) -> Option<ClockTime> {
        self.next
    }

    /// Starts the sequence at a GAP with no frame before it.
    pub fn start_at(&mut self, pts: ClockTime) {
        if self.next.is_none() {
            self.next = Some(pts);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> ClockTime {
        ClockTime::from_mseconds(v)
    }

    #[test]
    fn regular_frames_miss_nothing() {
        let mut t = Timeline::new(ms(40));
        for i in 0..10 {
            assert!(t.arrive(ms(40 * i)).is_empty());
        }
    }

    #[test]
    fn the_slot_just_shown_again_is_a_repeat_and_further_back_is_not() {
        let mut t = Timeline::new(ms(40));
        assert!(!t.repeats(ms(0)), "nothing shown yet");
        t.arrive(ms(0));
        t.arrive(ms(40));
        assert!(t.repeats(ms(40)) && t.repeats(ms(45)) && t.repeats(ms(35)));
        assert!(!t.repeats(ms(80)), "the next slot is new");
        assert!(!t.repeats(ms(0)), "two slots back is a new sequence");
    }

    #[test]
    fn a_jump_yields_each_skipped_slot() {
        let mut t = Timeline::new(ms(40));
        assert!(t.arrive(ms(0)).is_empty());
        assert!(t.arrive(ms(40)).is_empty());
        assert_eq!(t.arrive(ms(160)), vec![ms(80), ms(120)]);
        assert!(t.arrive(ms(200)).is_empty());
    }

    #[test]
    fn jitter_under_half_a_frame_is_on_time() {
        let mut t = Timeline::new(ms(40));
        t.arrive(ms(0));
        assert!(t.arrive(ms(59)).is_empty());
        assert!(t.arrive(ms(90)).is_empty());
    }

    #[test]
    fn a_huge_jump_is_a_discontinuity() {
        let mut t = Timeline::new(ms(40));
        t.arrive(ms(0));
        assert!(t.arrive(ms(40 * (MAX_MISSING + 10))).is_empty());
        assert!(t.arrive(ms(40 * (MAX_MISSING + 11))).is_empty());
    }

    #[test]
    fn a_frame_continues_the_sequence_unless_it_goes_back_or_jumps_far() {
        let mut t = Timeline::new(ms(40));
        assert!(!t.continues(ms(0)), "nothing to continue yet");
        t.arrive(ms(0));
        assert!(t.continues(ms(40)));
        assert!(t.continues(ms(30)), "jitter");
        assert!(t.continues(ms(40 * 20)), "a few lost frames");
        assert!(!t.continues(ms(0)), "backwards");
        assert!(!t.continues(ms(40 * (MAX_MISSING + 10))), "a jump");
    }

    #[test]
    fn gaps_fill_their_slots() {
        let mut t = Timeline::new(ms(40));
        t.arrive(ms(0));
        assert_eq!(t.missing_until(ms(120)), vec![ms(40), ms(80)]);
        assert!(t.arrive(ms(120)).is_empty());
        let mut fresh = Timeline::new(ms(40));
        fresh.start_at(ms(0));
        assert_eq!(fresh.missing_until(ms(80)), vec![ms(0), ms(40)]);
    }
}
