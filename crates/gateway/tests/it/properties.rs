//! Property tests for the gateway's path check: whatever path a client sends, the
//! check answers (never panics), and a path it lets through holds no dot segment
//! under any number of percent-decodings, `;parameters` or NULs, so no upstream,
//! however it reads paths, can be walked out of the route's prefix.

#![allow(clippy::unwrap_used)]

use gateway::route::check_path;
use proptest::prelude::*;

/// Decodes `%XX` until nothing changes, independently of the gateway's code.
fn fully_decoded(path: &str) -> String {
    let mut current = path.as_bytes().to_vec();
    loop {
        let mut next = Vec::with_capacity(current.len());
        let mut i = 0;
        while i < current.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if current[i] == b'%'
                && i + 2 < current.len()
                && let (Some(hi), Some(lo)) = (hex(current[i + 1]), hex(current[i + 2]))
            {
                next.push((hi * 16 + lo) as u8);
                i += 3;
            } else {
                next.push(current[i]);
                i += 1;
            }
        }
        if next == current {
            return String::from_utf8_lossy(&current).into_owned();
        }
        current = next;
    }
}

/// Whether some reading of `path` by an upstream is a walk up or a same-directory
/// trick: a `.` or `..` segment once `;parameters` and anything after a NUL are cut.
fn has_dot_segment(reading: &str) -> bool {
    reading
        .split(['/', '\\'])
        .map(|segment| segment.split([';', '\0']).next().unwrap_or(segment))
        .any(|name| name == "." || name == "..")
}

/// Paths built from the pieces traversal attempts are made of.
fn tricky_path() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "/", "/", ".", "..", "%2e", "%2E", "%252e", "%25252e", "%25", "%", "2e", "%2f", "%2F",
        "%252f", "%5c", "\\", ";", "..;", ";x=1", "%3b", "%00", "a", "services", "x", "%41", "%zz",
        "é", "%c0%ae",
    ]);
    prop::collection::vec(piece, 0..12).prop_map(|pieces| format!("/{}", pieces.concat()))
}

proptest! {
    #[test]
    fn any_string_is_answered(path in ".*") {
        let _ = check_path(&path);
    }

    #[test]
    fn an_accepted_path_never_reads_as_a_dot_segment(path in tricky_path()) {
        if check_path(&path).is_ok() {
            prop_assert!(!has_dot_segment(&path), "{path:?} accepted as sent");
            let decoded = fully_decoded(&path);
            prop_assert!(!has_dot_segment(&decoded), "{path:?} accepted, decodes to {decoded:?}");
        }
    }

    #[test]
    fn ordinary_paths_pass(segments in prop::collection::vec("[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,11}", 0..6)) {
        let path = format!("/services/x/{}", segments.join("/"));
        prop_assert!(check_path(&path).is_ok(), "{path:?} refused");
    }
}
