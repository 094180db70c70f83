//! Errors as the user sees them: every fixture under `tests/ui/<topic>/` holds one mistake and
//! must fail to compile with exactly the committed `.stderr` (trybuild).
//!
//! Regenerate the `.stderr` files with `TRYBUILD=overwrite cargo test -p mrnn-tests --test ui`
//! and read the diff before committing.
//!
//! The `from "…json"` fixtures name their configs relative to the manifest directory of the
//! project trybuild builds them in, `target/tests/trybuild/mrnn-tests/`: four levels up is the
//! workspace root, hence `from "../../../../tests/ui/json/x.json"`.

use std::path::{Path, PathBuf};

/// The target directory this test binary was built into (`<target>/debug/deps/ui-…`): trybuild
/// builds the fixtures under the same one.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test binary");
    exe.ancestors().nth(3).expect("<target>/<profile>/deps/<binary>").to_path_buf()
}

#[test]
fn ui() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let expected =
        workspace.join("target").canonicalize().expect("the workspace's target directory");
    let actual = target_dir().canonicalize().expect("the test binary's target directory");
    assert_eq!(
        actual, expected,
        "the JSON fixtures of tests/ui/json are found through `../../../../` from trybuild's project \
         in the default target directory; run without CARGO_TARGET_DIR"
    );
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/**/*.rs");
}
