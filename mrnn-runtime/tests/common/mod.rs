//! Helpers shared by the integration tests: reference data and tolerances.
#![allow(dead_code, unreachable_pub, reason = "each test binary uses a different subset")]

use std::collections::HashMap;
use std::path::PathBuf;

use mrnn_runtime::{Architecture, Device, Tensor};

/// `../shared/reference` beside the checkout.
pub fn reference(file: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/reference")).join(file)
}

/// The tensors of a reference `.safetensors` file, on the CPU.
pub fn load(file: &str) -> HashMap<String, Tensor> {
    let path = reference(file);
    candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Compiles a reference config as it is.
pub fn compile(file: &str) -> Architecture {
    mrnn_ir::compile_json_file(&reference(file)).unwrap_or_else(|r| panic!("{r}")).architecture
}

/// max |a - b| over all entries.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// max |t| over all entries.
pub fn max_abs(t: &Tensor) -> f32 {
    t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// The parity rule of reference/README.md: max |got - expected| <= 1e-4 * max(1, max |expected|).
pub fn assert_close(what: &str, got: &Tensor, expected: &Tensor) {
    let got = got.to_dtype(candle_core::DType::F32).unwrap();
    let tol = 1e-4 * max_abs(expected).max(1.0);
    let err = max_abs_diff(&got, expected);
    assert!(err <= tol, "{what}: max |got - expected| = {err}, tolerance {tol}");
}

/// The values of a tensor as a flat vector.
pub fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// A fresh directory under the system's temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("mrnn-runtime-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn join(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
