//! The real `tm-provider serve` process refuses a store that is not the one it served: a
//! database file reset to zero length, another provider's store, a file of garbage. Each time it
//! exits non-zero with a message naming the database, the ids and what to do, and leaves the
//! file as it was. The first start on nothing just runs, and `--accept-new-store` serves a new
//! store on purpose and records it. On PostgreSQL, another provider's database is refused the
//! same way. The key pins hold on either backend.
//!
//! The cases about the database file (reset, replaced, damaged) are about SQLite's file and
//! run on SQLite only; the others run on the backend `TM_TEST_STORE` names.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tm_testkit::backend::{Backend, TestStore};
use tm_testkit::net::free_port;
use tm_testkit::process::Spawned;

/// A provider process; killed when dropped.
struct Provider {
    child: Spawned,
}

/// Whether this run's store is the SQLite file (the cases about the file itself need it).
fn on_sqlite() -> bool {
    Backend::of_run() == Backend::Sqlite
}

/// The configuration of a provider in `dir` serving `store`, its key files in `dir`.
fn config(dir: &Path, port: u16, store: &TestStore) -> PathBuf {
    let path = dir.join("provider.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n\
             key_file = \"{key}\"\n{store}[attachments]\nkey_file = \"{uri_key}\"\n",
            key = dir.join("provider.key").display(),
            store = store.setting(),
            uri_key = dir.join("attachments.key").display(),
        ),
    )
    .unwrap();
    path
}

/// A provider in `dir` serving `store` (its own directory's, or another's).
fn spawn_on(dir: &Path, store: &TestStore, port: u16, extra: &[&str]) -> Provider {
    let child = Spawned::start(
        "tm-provider",
        Command::new(env!("CARGO_BIN_EXE_tm-provider"))
            .arg("--config")
            .arg(config(dir, port, store))
            .arg("serve")
            .args(extra)
            .env("TM_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("provider.log")).unwrap()),
    );
    Provider { child }
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("provider.log")).unwrap_or_default()
}

/// Starts the provider and waits (bounded) until it listens.
fn serve(dir: &Path, extra: &[&str]) -> Provider {
    serve_on(dir, &TestStore::in_dir(dir), extra)
}

/// Starts the provider in `dir` on `store` and waits (bounded) until it listens.
fn serve_on(dir: &Path, store: &TestStore, extra: &[&str]) -> Provider {
    let port = free_port();
    let mut provider = spawn_on(dir, store, port, extra);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = provider.child.try_wait() {
            panic!("the provider exited ({status}): {}", log(dir));
        }
        assert!(
            Instant::now() < deadline,
            "the provider did not listen: {}",
            log(dir)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    provider
}

/// Stops the provider with SIGTERM (it closes the store: the WAL is checkpointed) and waits.
fn stop(mut provider: Provider) {
    assert!(
        provider.child.terminate(Duration::from_secs(10)).is_some(),
        "the provider did not stop"
    );
}

/// Starts the provider and expects it to refuse: exit non-zero within the bound, without ever
/// listening. Returns its log.
fn refused(dir: &Path, extra: &[&str]) -> String {
    refused_on(dir, &TestStore::in_dir(dir), extra)
}

/// Starts the provider in `dir` on `store` and expects it to refuse ([`refused`]).
fn refused_on(dir: &Path, store: &TestStore, extra: &[&str]) -> String {
    let port = free_port();
    let mut provider = spawn_on(dir, store, port, extra);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = provider.child.try_wait() {
            assert!(!status.success(), "exited 0: {}", log(dir));
            return log(dir);
        }
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "the provider serves this store: {}",
            log(dir)
        );
        assert!(
            Instant::now() < deadline,
            "the provider neither served nor exited: {}",
            log(dir)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A directory where a provider has served once and stopped cleanly.
fn served_once() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    stop(serve(dir.path(), &[]));
    dir
}

fn store_id_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("provider.store-id"))
        .unwrap()
        .trim()
        .to_owned()
}

/// The database file, with its WAL and shared memory removed (what a reset leaves).
fn reset_to(dir: &Path, bytes: &[u8]) -> PathBuf {
    let store = dir.join("provider.db");
    for side in ["provider.db-wal", "provider.db-shm"] {
        let _ = std::fs::remove_file(dir.join(side));
    }
    std::fs::write(&store, bytes).unwrap();
    store
}

#[test]
fn a_zero_length_database_after_serving_is_refused_and_left_alone() {
    // About the SQLite file itself (PostgreSQL: another_database_is_refused_until_accepted).
    if !on_sqlite() {
        return;
    }
    let dir = served_once();
    let store = reset_to(dir.path(), b"");
    let log = refused(dir.path(), &[]);
    let recorded = store_id_of(dir.path());
    assert!(log.contains("is an empty file"), "{log}");
    assert!(log.contains(&recorded), "names the store it served: {log}");
    assert!(log.contains(&store.display().to_string()), "{log}");
    assert!(
        log.contains("restore the database from its backup"),
        "{log}"
    );
    assert!(log.contains("--accept-new-store"), "{log}");
    assert_eq!(
        std::fs::metadata(&store).unwrap().len(),
        0,
        "the file is untouched"
    );
    assert_eq!(store_id_of(dir.path()), recorded, "the record is untouched");
}

#[test]
fn another_providers_store_is_refused_with_both_ids() {
    // About the SQLite file itself (PostgreSQL: another_database_is_refused_until_accepted).
    if !on_sqlite() {
        return;
    }
    let ours = served_once();
    let theirs = served_once();
    let foreign = std::fs::read(theirs.path().join("provider.db")).unwrap();
    let store = reset_to(ours.path(), &foreign);
    let log = refused(ours.path(), &[]);
    let (our_id, their_id) = (store_id_of(ours.path()), store_id_of(theirs.path()));
    assert_ne!(our_id, their_id);
    assert!(log.contains(&our_id) && log.contains(&their_id), "{log}");
    assert!(
        log.contains("restore the database from its backup"),
        "{log}"
    );
    assert_eq!(
        std::fs::read(&store).unwrap(),
        foreign,
        "the file is untouched"
    );
}

#[test]
fn a_file_of_garbage_is_refused_by_the_check() {
    // About the SQLite file itself (PostgreSQL: another_database_is_refused_until_accepted).
    if !on_sqlite() {
        return;
    }
    let dir = served_once();
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 3).to_le_bytes()[0]).collect();
    let store = reset_to(dir.path(), &garbage);
    let log = refused(dir.path(), &[]);
    assert!(log.contains("damaged or not a database"), "{log}");
    assert_eq!(
        std::fs::read(&store).unwrap(),
        garbage,
        "the file is untouched"
    );
    // Not even the explicit flag serves a damaged file.
    let log = refused(dir.path(), &["--accept-new-store"]);
    assert!(log.contains("damaged or not a database"), "{log}");
    assert_eq!(
        std::fs::read(&store).unwrap(),
        garbage,
        "the file is untouched"
    );
}

#[test]
fn a_damaged_page_is_refused_by_quick_check() {
    // About the SQLite file itself (PostgreSQL: another_database_is_refused_until_accepted).
    if !on_sqlite() {
        return;
    }
    let dir = served_once();
    let store = dir.path().join("provider.db");
    let mut bytes = std::fs::read(&store).unwrap();
    assert!(bytes.len() > 3 * 4096, "a store of several pages");
    // Page 2 onwards: overwrite a b-tree page header with nonsense, keep the file header.
    for b in &mut bytes[4096..4096 + 64] {
        *b = 0xEE;
    }
    let store = reset_to(dir.path(), &bytes);
    let log = refused(dir.path(), &[]);
    assert!(log.contains("damaged or not a database"), "{log}");
    assert_eq!(
        std::fs::read(&store).unwrap(),
        bytes,
        "the file is untouched"
    );
}

#[test]
fn the_first_start_runs_and_a_new_store_is_served_only_when_accepted() {
    // About the SQLite file itself (PostgreSQL: another_database_is_refused_until_accepted).
    if !on_sqlite() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    stop(serve(dir.path(), &[]));
    let first = store_id_of(dir.path());
    // The same store again: served.
    stop(serve(dir.path(), &[]));
    assert_eq!(store_id_of(dir.path()), first);
    // Reset, then accepted on purpose: served, and recorded as the store from now on.
    reset_to(dir.path(), b"");
    stop(serve(dir.path(), &["--accept-new-store"]));
    let second = store_id_of(dir.path());
    assert_ne!(second, first);
    assert!(log(dir.path()).contains("--accept-new-store"));
    stop(serve(dir.path(), &[]));
    assert_eq!(store_id_of(dir.path()), second);
}

#[test]
fn another_database_is_refused_until_accepted() {
    // The PostgreSQL twin of the file cases above (SQLite: another_providers_store_is_refused_with_both_ids).
    if on_sqlite() {
        return;
    }
    let ours = served_once();
    let theirs = served_once();
    let (our_id, their_id) = (store_id_of(ours.path()), store_id_of(theirs.path()));
    assert_ne!(our_id, their_id);
    // Two instances of one deployment (the same key files), each on a database of its own.
    for key in ["provider.key", "attachments.key"] {
        std::fs::copy(theirs.path().join(key), ours.path().join(key)).unwrap();
    }
    let their_store = TestStore::in_dir(theirs.path());
    let TestStore::Postgres(their_db) = &their_store else {
        unreachable!("a PostgreSQL run")
    };
    let stored_id = "SELECT store_id FROM store_identity";
    assert_eq!(their_store.value(stored_id), their_id);
    // Our provider pointed at their database: refused, both ids and the database named.
    let refusal = refused_on(ours.path(), &their_store, &[]);
    assert!(
        refusal.contains(&our_id) && refusal.contains(&their_id),
        "{refusal}"
    );
    assert!(
        refusal.contains(&their_db.url()),
        "names the database: {refusal}"
    );
    assert!(
        refusal.contains("restore the database from its backup"),
        "{refusal}"
    );
    assert!(refusal.contains("--accept-new-store"), "{refusal}");
    assert_eq!(store_id_of(ours.path()), our_id, "the record is untouched");
    assert_eq!(
        their_store.value(stored_id),
        their_id,
        "the store is untouched"
    );
    // Accepted on purpose: served, and recorded as the store from now on.
    stop(serve_on(ours.path(), &their_store, &["--accept-new-store"]));
    assert_eq!(store_id_of(ours.path()), their_id);
    assert!(log(ours.path()).contains("--accept-new-store"));
    stop(serve_on(ours.path(), &their_store, &[]));
    // And their database is now the one our provider serves: its own database is refused.
    let refusal = refused(ours.path(), &[]);
    assert!(
        refusal.contains(&our_id) && refusal.contains(&their_id),
        "{refusal}"
    );
}

fn fingerprint_of(key_file: &Path) -> String {
    let (key, created) = tm_protocol::SigningKey::load_or_create(key_file).unwrap();
    assert!(!created);
    key.verifying_key().fingerprint()
}

#[test]
fn a_provider_key_other_than_the_pinned_one_is_refused_until_accepted() {
    let dir = served_once();
    let key_file = dir.path().join("provider.key");
    let original = std::fs::read(&key_file).unwrap();
    let pinned = fingerprint_of(&key_file);
    // The key file is lost (a restore that missed it): no new key is made.
    std::fs::remove_file(&key_file).unwrap();
    let log = refused(dir.path(), &[]);
    assert!(log.contains("the receipts key file"), "{log}");
    assert!(log.contains("is missing") && log.contains(&pinned), "{log}");
    assert!(
        log.contains("restore the key file from its backup"),
        "{log}"
    );
    assert!(log.contains("--accept-new-keys"), "{log}");
    assert!(!key_file.exists(), "no key was made");
    // Another provider's key in its place: refused, both fingerprints named.
    let other = tempfile::tempdir().unwrap();
    let found = {
        let (key, _) = tm_protocol::SigningKey::load_or_create(&other.path().join("k")).unwrap();
        key.verifying_key().fingerprint()
    };
    std::fs::copy(other.path().join("k"), &key_file).unwrap();
    let log = refused(dir.path(), &[]);
    assert!(log.contains(&pinned) && log.contains(&found), "{log}");
    // The original key restored: served as before.
    std::fs::write(&key_file, &original).unwrap();
    stop(serve(dir.path(), &[]));
    // A new key taken on purpose: pinned from then on, so the original is refused.
    std::fs::remove_file(&key_file).unwrap();
    stop(serve(dir.path(), &["--accept-new-keys"]));
    let new = fingerprint_of(&key_file);
    stop(serve(dir.path(), &[]));
    std::fs::write(&key_file, &original).unwrap();
    let log = refused(dir.path(), &[]);
    assert!(log.contains(&new) && log.contains(&pinned), "{log}");
}

#[test]
fn a_lost_attachment_key_is_refused() {
    let dir = served_once();
    let uri_key = dir.path().join("attachments.key");
    assert!(
        uri_key.exists(),
        "made at the first start next to the database"
    );
    std::fs::remove_file(&uri_key).unwrap();
    let log = refused(dir.path(), &[]);
    assert!(log.contains("the attachment-uris key file"), "{log}");
    assert!(log.contains("attachment URI"), "{log}");
    assert!(!uri_key.exists(), "no key was made");
}
