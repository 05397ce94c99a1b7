//! The invariant that ties writer files together: the writer numbers its records one after
//! another across rotations (a torn tail's seqs are given again to the records that replace
//! it), so each writer file starts at the seq after the last one of the writer file before it.
//! Nothing else marks where a sealed file ended, so this is what shows a sealed writer file cut
//! exactly at a record boundary (a partial copy, say), which otherwise reads as a shorter file.
//!
//! Only where no file between the two could have been merged away is a gap damage: a merge
//! deletes whole files, whose records (the live ones) went into its outputs, so two writer files
//! with a missing id between them may rightly have a gap.

use super::FileId;

/// A writer file (`FileKind::Data`) and its seq range as read; `None` if it holds no records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterFile {
    /// The file's id.
    pub id: FileId,
    /// Its smallest and largest seq.
    pub seqs: Option<(u64, u64)>,
}

/// Records missing between two writer files: `earlier` ends at seq `last` (or holds no records,
/// though a newer writer file follows it, so it was sealed, and the writer never seals an empty
/// file), and `later`, the next writer file, starts at `first`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqGap {
    /// The writer file that lost records from its end.
    pub earlier: FileId,
    /// Its last seq, if it holds any record.
    pub last: Option<u64>,
    /// The next writer file.
    pub later: FileId,
    /// That file's first seq.
    pub first: u64,
}

/// The first of [`seq_gaps`].
pub fn find_seq_gap(writers: &[WriterFile], exists: impl Fn(FileId) -> bool) -> Option<SeqGap> {
    seq_gaps(writers, exists).into_iter().next()
}

/// Every gap in `writers` (sorted by id): a writer file with records that does not start
/// at the seq after the last one of the nearest writer file with records before it, where every
/// id between those two is a data file that `exists` (no file between them was merged away).
/// The gap is blamed on the writer file right before the later one: the one cut short, or, if it
/// holds no records, cut back to its header. With no writer file with records before it, an
/// empty writer file right before it is blamed unless the later file starts at seq 1 (nothing
/// came before).
///
/// Writer files without records are otherwise passed over: this build never seals one, but older
/// builds could (with a data file limit no longer than a file header, which left an empty first
/// file before seq 1; or after a failed directory fsync in a rotation, between consecutive
/// ranges). An empty newest file is a new one.
pub fn seq_gaps(writers: &[WriterFile], exists: impl Fn(FileId) -> bool) -> Vec<SeqGap> {
    let mut gaps = Vec::new();
    // The nearest writer file with records so far: its id and last seq.
    let mut with_records: Option<(FileId, u64)> = None;
    let mut previous: Option<WriterFile> = None;
    for &file in writers {
        if let (Some((first, _)), Some(earlier)) = (file.seqs, previous) {
            let missing = match with_records {
                Some((since, last)) => {
                    (since + 1..file.id).all(&exists) && last.checked_add(1) != Some(first)
                }
                None => (earlier.id + 1..file.id).all(&exists) && first != 1,
            };
            if missing {
                gaps.push(SeqGap {
                    earlier: earlier.id,
                    last: earlier.seqs.map(|(_, last)| last),
                    later: file.id,
                    first,
                });
            }
        }
        if let Some((_, last)) = file.seqs {
            with_records = Some((file.id, last));
        }
        previous = Some(file);
    }
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(id: FileId, seqs: Option<(u64, u64)>) -> WriterFile {
        WriterFile { id, seqs }
    }

    #[test]
    fn consecutive_writer_files_show_no_gap() {
        let files = [
            file(1, Some((1, 10))),
            file(3, Some((11, 20))),
            file(4, None),
        ];
        assert_eq!(find_seq_gap(&files, |id| id == 2), None);
    }

    #[test]
    fn a_file_that_ends_early_is_named() {
        let files = [file(1, Some((1, 8))), file(2, Some((11, 20)))];
        let gap = find_seq_gap(&files, |_| true).unwrap();
        assert_eq!(
            (gap.earlier, gap.last, gap.later, gap.first),
            (1, Some(8), 2, 11)
        );
    }

    #[test]
    fn an_empty_file_is_passed_over_unless_the_seqs_show_it_lost_records() {
        // An older build's empty sealed file before seq 1 or between consecutive ranges, and an
        // empty newest file: nothing is missing.
        let files = [file(1, None), file(2, Some((1, 8))), file(3, None)];
        assert_eq!(find_seq_gap(&files, |_| true), None);
        // The first writer file cut back to its header: records came before seq 5.
        let files = [file(1, None), file(2, Some((5, 8)))];
        let gap = find_seq_gap(&files, |_| true).unwrap();
        assert_eq!(
            (gap.earlier, gap.last, gap.later, gap.first),
            (1, None, 2, 5)
        );
        let files = [file(1, Some((1, 8))), file(2, None), file(3, Some((9, 9)))];
        assert_eq!(find_seq_gap(&files, |_| true), None);
        // A sealed file cut back to its header: the seqs jump over it, and it is blamed.
        let files = [
            file(1, Some((1, 8))),
            file(2, None),
            file(3, Some((15, 20))),
        ];
        let gap = find_seq_gap(&files, |_| true).unwrap();
        assert_eq!(
            (gap.earlier, gap.last, gap.later, gap.first),
            (2, None, 3, 15)
        );
    }

    #[test]
    fn every_gap_is_listed() {
        let files = [
            file(1, Some((1, 8))),
            file(2, Some((11, 20))),
            file(3, Some((25, 30))),
        ];
        let gaps = seq_gaps(&files, |_| true);
        let pairs: Vec<_> = gaps.iter().map(|g| (g.earlier, g.later)).collect();
        assert_eq!(pairs, [(1, 2), (2, 3)]);
    }

    #[test]
    fn a_gap_where_a_file_may_have_been_merged_away_is_not_damage() {
        let files = [file(1, Some((1, 8))), file(4, Some((20, 30)))];
        assert_eq!(find_seq_gap(&files, |id| id == 2), None);
        assert!(find_seq_gap(&files, |id| id == 2 || id == 3).is_some());
    }
}
