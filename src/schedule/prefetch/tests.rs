use super::*;

#[test]
fn predicts_the_next_segments_on_the_same_timeline() {
    assert_eq!(
        next_segments("0000000200000001000000FE", 3, 16 << 20),
        vec![
            "0000000200000001000000FF",
            "000000020000000200000000",
            "000000020000000200000001"
        ]
    );
    assert!(next_segments("00000002.history", 3, 16 << 20).is_empty());
    assert!(next_segments("", 3, 16 << 20).is_empty());
}
