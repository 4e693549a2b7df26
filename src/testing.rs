//! Helpers the unit and property tests of several modules share.

/// `whole` cut at `cuts` (positions taken modulo its length, in order): the chunks a reader
/// might be handed.
pub(crate) fn chunked(whole: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (whole.len() + 1)).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain([whole.len()]) {
        chunks.push(whole[start..cut].to_vec());
        start = cut;
    }
    chunks
}
