//! The committed man page and shell completions are exactly what the clap definitions and
//! `common`'s tables generate now. Regenerate with
//! `UWSGI_REGENERATE=1 cargo test -p uwsgi-tests generated` and commit the result.

use uwsgi_tests::ctl;

#[test]
fn generated_uwsgictl_man_page_and_completions_are_fresh() {
    let root = ctl::workspace_root();
    let regenerate = std::env::var("UWSGI_REGENERATE").is_ok_and(|v| v == "1");
    let stale =
        uwsgictl::gen::check_generated(&root, &uwsgictl::gen::generated_files(), regenerate);
    assert!(
        stale.is_empty(),
        "generated files are out of date: {stale:?}; regenerate them with \
         `UWSGI_REGENERATE=1 cargo test -p uwsgi-tests generated` and commit them"
    );
}
