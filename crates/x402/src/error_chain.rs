//! One way to walk an error's causes, for the places that report a transport failure:
//! the message people need ("connection refused") is usually a cause several levels
//! below the error they were handed ("error sending request").

use std::error::Error;

/// `e` and then each of its causes, outermost first: for finding a typed cause with
/// `downcast_ref`, or the innermost one with `last`.
pub fn causes<'a>(e: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(e), |&e| e.source())
}

/// `e`'s message followed by each cause that adds something, joined with `": "`
/// ("error sending request: connection refused"); a cause whose text the message
/// already holds is skipped, since many errors repeat their source in their own text.
pub fn flatten(e: &(dyn Error + 'static)) -> String {
    let mut message = e.to_string();
    for cause in causes(e).skip(1) {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Layer {
        text: &'static str,
        #[source]
        source: Option<Box<Layer>>,
    }

    fn chain(texts: &[&'static str]) -> Layer {
        let mut error = None;
        for text in texts.iter().rev() {
            error = Some(Layer {
                text,
                source: error.map(Box::new),
            });
        }
        error.expect("at least one layer")
    }

    #[test]
    fn causes_are_walked_outermost_first() {
        let e = chain(&["sending", "connect", "refused"]);
        let texts: Vec<String> = causes(&e).map(|c| c.to_string()).collect();
        assert_eq!(texts, ["sending", "connect", "refused"]);
        assert_eq!(
            causes(&e).last().map(|c| c.to_string()),
            Some("refused".into())
        );
    }

    #[test]
    fn flatten_joins_causes_and_skips_repeats() {
        assert_eq!(
            flatten(&chain(&["sending", "connect", "refused"])),
            "sending: connect: refused"
        );
        assert_eq!(
            flatten(&chain(&["connect: refused", "refused"])),
            "connect: refused"
        );
        assert_eq!(flatten(&chain(&["alone"])), "alone");
    }
}
