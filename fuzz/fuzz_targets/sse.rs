//! The SSE readers on arbitrary bytes: the commit judge (`tier1::testing::proxy::sse::CommitScanner`) and
//! the event framing of the stream translators (`tier1::testing::translate::Sse`). Fed in pieces, both
//! must see exactly what they see when fed the stream whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tier1::testing::proxy::sse::{CommitScanner, Verdict};
use tier1::testing::translate::{EventTranslator, Sse, StreamTranslator};
use tier1_fuzz::{feed, pieces};

/// Writes the data of every event it is given, length-prefixed, so comparing outputs compares
/// events; complete after a `data: end` event, to check that nothing after the end is delivered.
#[derive(Default)]
struct Recorder {
    ended: bool,
}

impl EventTranslator for Recorder {
    fn on_event(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
        assert!(!self.ended, "an event was delivered after the stream's end");
        self.ended = data == b"end";
        out.extend_from_slice(&(data.len() as u64).to_le_bytes());
        out.extend_from_slice(data);
        true
    }

    fn complete(&self) -> bool {
        self.ended
    }

    fn usage(&self) -> Option<(u64, u64)> {
        None
    }
}

/// The judge's first decisive verdict (or `Pending`) and the events it had read by then.
fn judge(data: &[u8], sizes: &[usize]) -> (Verdict, usize) {
    let mut s = CommitScanner::default();
    let mut at = 0;
    for &size in sizes {
        let end = (at + size).min(data.len());
        let v = s.feed(&data[at..end]);
        at = end;
        if v != Verdict::Pending {
            return (v, s.events());
        }
    }
    (Verdict::Pending, s.events())
}

fuzz_target!(|data: &[u8]| {
    let sizes = pieces(data);
    assert_eq!(judge(data, &sizes), judge(data, &[data.len()]), "the verdict depends on the split");

    let mut whole = Sse::wrap(Recorder::default());
    let want = whole.feed(data);
    let mut split = Sse::wrap(Recorder::default());
    let got = feed(&mut split, data, &sizes);
    assert_eq!(got, want, "the events depend on the split");
    assert_eq!(split.complete(), whole.complete());
});
