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

/// The first gap between consecutive writer files of `writers` (sorted by id) between which
/// every id is a data file that `exists`: no file between them was merged away. A newest writer
/// file without records (a new file, or a tail cut back to its header) shows nothing.
pub fn find_seq_gap(writers: &[WriterFile], exists: impl Fn(FileId) -> bool) -> Option<SeqGap> {
    writers.windows(2).find_map(|pair| {
        let (earlier, later) = (pair[0], pair[1]);
        let (first, _) = later.seqs?;
        let nothing_merged_away = (earlier.id + 1..later.id).all(&exists);
        let last = earlier.seqs.map(|(_, last)| last);
        let consecutive = last.is_some_and(|last| last.checked_add(1) == Some(first));
        (nothing_merged_away && !consecutive).then_some(SeqGap {
            earlier: earlier.id,
            last,
            later: later.id,
            first,
        })
    })
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
    fn an_empty_sealed_file_is_a_gap_but_an_empty_newest_file_is_not() {
        let files = [file(1, Some((1, 8))), file(2, None), file(3, Some((9, 9)))];
        let gap = find_seq_gap(&files, |_| true).unwrap();
        assert_eq!((gap.earlier, gap.last, gap.later), (2, None, 3));
        assert_eq!(find_seq_gap(&files[..2], |_| true), None);
    }

    #[test]
    fn a_gap_where_a_file_may_have_been_merged_away_is_not_damage() {
        let files = [file(1, Some((1, 8))), file(4, Some((20, 30)))];
        assert_eq!(find_seq_gap(&files, |id| id == 2), None);
        assert!(find_seq_gap(&files, |id| id == 2 || id == 3).is_some());
    }
}
