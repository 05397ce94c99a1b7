//! `recover`: opens an arbitrary store directory image (data, hint, `MERGE` and `.tmp` files,
//! raw or built with the real encoders, then truncated or bit-flipped). Open fails or succeeds
//! but never panics; every value read back is one that some record of that key in the image
//! holds; an `FSYNC_FAILED` record added to the image changes no answer; a write, a merge and a close don't panic, and when they all succeed the store reopens
//! cleanly with the write in it; after the merge and after the reopen every other key reads as
//! after the first open (nothing lost, nothing removed brought back), but for keys a lying hint
//! can misplace. See `bitcask_fuzz::check_recover`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|image: bitcask_fuzz::Image| {
    bitcask_fuzz::check_recover(&image);
});
