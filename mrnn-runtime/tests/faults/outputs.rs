//! Output paths that are not regular files: FIFOs, sockets, character devices, directories,
//! symbolic links to any of them, files where a directory should be, missing and unwritable
//! directories. Each is refused with an error naming what it is, before the work where the
//! command knows its outputs up front, and nothing is ever replaced; a symbolic link to a
//! regular file is written through and stays a link.
#![cfg(unix)]

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use candle_core::{Device, Tensor};

use crate::harness::mrnn;

fn reference(file: &str) -> String {
    format!("{}/../../shared/reference/{file}", env!("CARGO_MANIFEST_DIR"))
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// A safetensors file with `input` `[2, 20, 3]`, for the flip-flop network.
fn input(dir: &Path) -> PathBuf {
    let t = Tensor::ones((2, 20, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
    let path = dir.join("input.safetensors");
    candle_core::safetensors::save(&HashMap::from([("input".to_owned(), t)]), &path).unwrap();
    path
}

/// `mrnn simulate` of mRNNTorch's flip-flop network, writing `output`.
fn simulate(input: &Path, output: &Path) -> crate::harness::Run {
    mrnn(&[
        "simulate",
        &reference("flip_flop.json"),
        "--weights",
        &reference("flip_flop_rnn_leaky.pth"),
        "--prefix",
        "rnn.",
        "--input",
        arg(input),
        "--output",
        arg(output),
    ])
    .run()
}

/// What a path is, to compare before and after: file type, device number, inode.
fn identity(path: &Path) -> (std::fs::FileType, u64, u64) {
    let m = std::fs::symlink_metadata(path).unwrap();
    (m.file_type(), m.rdev(), m.ino())
}

/// Special files in `dir`, with the word the refusal must use: a FIFO, a socket, a directory,
/// and a character device. The device is a node made in `dir` (`mknod`, as root) with the
/// numbers of `/dev/full`; without the privilege, `/dev/full` itself, which such a user cannot
/// replace, so that a faulty writer can never damage the system's own nodes.
fn special_files(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let fifo = dir.join("pipe");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo works here");
    let socket = dir.join("socket");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let directory = dir.join("directory");
    std::fs::create_dir(&directory).unwrap();
    let node = dir.join("full");
    let device = match std::process::Command::new("mknod").arg(&node).args(["c", "1", "7"]).status()
    {
        Ok(s) if s.success() => node,
        _ => PathBuf::from("/dev/full"),
    };
    assert!(std::fs::metadata(&device).unwrap().file_type().is_char_device());
    vec![
        (fifo, "a FIFO"),
        (socket, "a socket"),
        (directory, "a directory"),
        (device, "a character device"),
    ]
}

#[test]
fn simulate_never_replaces_a_special_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    for (special, what) in special_files(dir.path()) {
        let before = identity(&special);
        simulate(&input, &special).assert_error(&[what, "not a regular file"]);
        assert_eq!(identity(&special), before, "{} was replaced", special.display());
        // Through a symbolic link: refused the same way, the link and its target kept.
        let link = dir.path().join("link-to-special");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&special, &link).unwrap();
        simulate(&input, &link).assert_error(&[what, "symbolic link"]);
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(identity(&special), before);
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| Path::new(n).extension().is_some_and(|e| e == "tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn simulate_writes_through_a_link_to_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    std::fs::create_dir(dir.path().join("results")).unwrap();
    let real = dir.path().join("results/trajectory.safetensors");
    std::fs::write(&real, b"old").unwrap();
    let link = dir.path().join("latest.safetensors");
    std::os::unix::fs::symlink("results/trajectory.safetensors", &link).unwrap();
    simulate(&input, &link).assert_ok();
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    let got = candle_core::safetensors::load(&real, &Device::Cpu).unwrap();
    assert_eq!(got["h"].dims(), &[2, 20, 30]);
    // A dangling link creates its target.
    let dangling = dir.path().join("next.safetensors");
    std::os::unix::fs::symlink("results/next.safetensors", &dangling).unwrap();
    simulate(&input, &dangling).assert_ok();
    assert!(dir.path().join("results/next.safetensors").is_file());
}

#[test]
fn output_paths_are_checked_before_the_work() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    let fifo = &special_files(dir.path())[0].0;
    // The output is checked first: with a network file that does not exist, the error is
    // still about the output.
    mrnn(&[
        "simulate",
        arg(&dir.path().join("missing.safetensors")),
        "--input",
        arg(&input),
        "--output",
        arg(fifo),
    ])
    .run()
    .assert_error(&["a FIFO"]);
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, b"keep").unwrap();
    simulate(&input, &dir.path().join("no/such/dir/out.safetensors"))
        .assert_error(&["no/such/dir", "does not exist"]);
    simulate(&input, &file.join("out.safetensors")).assert_error(&["not a directory"]);

    // `analyze --out`: a file, a path under a file, a FIFO; the file is left as it was.
    let analyze = |out: &Path| {
        mrnn(&["analyze", "currents", arg(&dir.path().join("missing.json")), "--out", arg(out)])
            .run()
    };
    analyze(&file).assert_error(&["notes.txt", "is a regular file, not a directory"]);
    analyze(&file.join("sub")).assert_error(&["notes.txt", "is a regular file"]);
    analyze(fifo).assert_error(&["a FIFO", "not a directory"]);
    assert_eq!(std::fs::read(&file).unwrap(), b"keep");

    // `train --out` a file: refused at once, not after the steps.
    mrnn(&["train", "flip-flop", "--hidden", "16", "--steps", "100000", "--out", arg(&file)])
        .timeout(Duration::from_secs(60))
        .run()
        .assert_error(&["notes.txt", "not a directory"]);
    assert_eq!(std::fs::read(&file).unwrap(), b"keep");
}

/// A directory where nobody may create a file: a read-only one (`0o555`) for an ordinary user;
/// root ignores permissions, so then `/sys`, where even root cannot create files.
fn unwritable_dir(dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let ro = dir.join("read-only");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let writable = |d: &Path| std::fs::write(d.join("probe"), b"").is_ok();
    if !writable(&ro) {
        return Some(ro);
    }
    let _ = std::fs::remove_file(ro.join("probe"));
    let sys = PathBuf::from("/sys");
    (sys.is_dir() && !writable(&sys)).then_some(sys)
}

#[test]
fn unwritable_directories_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let Some(ro) = unwritable_dir(dir.path()) else {
        eprintln!("no unwritable directory on this machine: case skipped");
        return;
    };
    let input = input(dir.path());
    simulate(&input, &ro.join("out.safetensors")).assert_error(&["cannot create a file in"]);
    let analyze = |out: &Path| {
        mrnn(&["analyze", "currents", arg(&dir.path().join("missing.json")), "--out", arg(out)])
            .run()
    };
    analyze(&ro).assert_error(&["cannot write into the output directory"]);
    analyze(&ro.join("sub")).assert_error(&["cannot create the output directory"]);
    assert!(!ro.join("sub").exists());
}

#[test]
fn a_special_file_in_the_training_directory_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    std::fs::create_dir(&out).unwrap();
    let metrics = out.join("metrics.json");
    let made = std::process::Command::new("mkfifo").arg(&metrics).status();
    assert!(made.is_ok_and(|s| s.success()));
    let before = identity(&metrics);
    mrnn(&[
        "train",
        "flip-flop",
        "--hidden",
        "16",
        "--steps",
        "2",
        "--batch",
        "4",
        "--time",
        "10",
        "--eval-trials",
        "4",
        "--out",
        arg(&out),
    ])
    .timeout(Duration::from_secs(60))
    .run()
    .assert_error(&["metrics.json", "a FIFO"]);
    assert_eq!(identity(&metrics), before);
    assert!(out.join("checkpoint.safetensors").is_file(), "the checkpoint was saved first");
}

#[test]
fn a_failed_run_leaves_the_previous_output_intact() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    let out = dir.path().join("out.safetensors");
    simulate(&input, &out).assert_ok();
    let before = std::fs::read(&out).unwrap();
    let bad = dir.path().join("bad.safetensors");
    let t = Tensor::ones((2, 20, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
    candle_core::safetensors::save(&HashMap::from([("input".to_owned(), t)]), &bad).unwrap();
    simulate(&bad, &out).assert_error(&["input has shape [2, 20, 4]"]);
    assert_eq!(std::fs::read(&out).unwrap(), before);
}
