//! The `mrnn!` macro: multi-regional recurrent networks whose architecture is checked by the
//! compiler. Use it through `mrnn_runtime::mrnn` (the runtime re-exports it); this crate only
//! forwards tokens to the compiler in `mrnn-ir` and holds the language reference below.

use proc_macro::TokenStream;

/// Declares a multi-regional recurrent network: a type with its sizes and region ranges as
/// constants, its architecture as a `const`, and constructors and `forward` on candle.
///
/// Every rule is checked while your crate compiles, and every broken rule is reported at once,
/// under the token that breaks it: an unknown region name, a sparsity out of range, an
/// inhibitory region wired as excitatory under Dale's law, an input region that drives nothing.
///
/// # Example
///
/// ```
/// use mrnn_runtime::{Device, Tensor, mrnn};
///
/// mrnn! {
///     /// A small excitatory/inhibitory circuit.
///     pub Ei {
///         dynamics: leaky(dt = 10.0, tau = 100.0),
///         activation: relu,
///         seed: 1,
///         input stim[3]: exc;
///         region exc[16]: exc in cortex;
///         region inh[4]: inh in cortex, base_firing = 0.1;
///         exc -> exc (sparsity = 0.5);
///         exc -> inh;
///         inh -> exc, inh;
///         stim -> exc;
///     }
/// }
///
/// # fn main() -> mrnn_runtime::Result<()> {
/// assert_eq!(Ei::HIDDEN, 20);
/// assert_eq!(Ei::INH, 16..20);
/// let net = Ei::new(&Device::Cpu)?;
/// let input = Tensor::ones((2, 5, Ei::INPUT), mrnn_runtime::DType::F32, &Device::Cpu)?;
/// let trajectory = net.forward(&input)?;
/// assert_eq!(trajectory.h.dims(), &[2, 5, Ei::HIDDEN]);
/// # Ok(())
/// # }
/// ```
///
/// # Grammar
///
/// `mrnn! { <doc comments> <visibility> Name { <items> } }`, where each item is one of:
///
/// - **A setting** `key: value,` (all optional; defaults are mRNNTorch's):
///   - `dynamics: leaky(dt = 10.0, tau = 100.0)` (the default; `alpha = dt / tau` must be in
///     `(0, 1]`), `dynamics: leaky` or `dynamics: elman`
///   - `activation: relu` (default), `tanh`, `sigmoid`, `softplus` or `linear`
///   - `dale: recurrent + input` (default), `recurrent`, `input` or `none`: which weight matrices
///     obey Dale's law (effective weights `mask * |W| * sign`)
///   - `noise: (act = 0.01, inp = 0.01)` (default) or `noise: none`: noise levels used when a
///     forward pass asks for noise
///   - `spectral_radius: 1.0`: scale the initial effective recurrent matrix to this radius
///   - `seed: 7` (default 0): masks and initial weights
///   - `batch_first: true` (default) or `false`: `[B, T, ..]` or `[T, B, ..]` tensors
/// - **An input region** `input name[units]: exc;` (or `inh`): a block of the input vector.
/// - **A recurrent region** `region name[units]: <properties>;`, properties separated by `,`:
///   - `exc` or `inh`: its sign (required for the matrices under Dale's law)
///   - `in parent`: the group it belongs to (`region alm_exc[40]: exc in alm;`); queries by
///     `alm` mean its regions in declaration order
///   - `base_firing = 1.0`: tonic input of every unit (default 0)
///   - `init = 0.5`: initial pre-activation of every unit (default 0)
///   - `learnable_bias`: train `base_firing`
/// - **A connection** `sources -> destinations (options);` with one or more names on each side
///   (`d1, d2 -> gpe, snr;` declares four connections). A group name (`in alm`) on either side
///   stands for the group's regions in declaration order (`alm -> d1;` is
///   `alm_exc, alm_inh -> d1;`). Options:
///   - `sparsity = 0.9`: fraction of zero weights per source unit, in `[0, 1)`; exactly
///     `ceil(sparsity * n_dst)` of each source unit's weights into the destination are zero
///   - `sign = exc` / `sign = inh`: the sign you expect, checked against the source region's sign
///
/// The hidden vector concatenates the recurrent regions in declaration order, the input vector
/// the input regions. Weight matrices are `[destination, source]`. Names are shared by
/// recurrent and input regions and must be unique.
///
/// Every number must be finite as an `f32`, the precision the network computes in (`1e300` is
/// refused, not turned into infinity), and within its range: `dt`, `tau` and
/// `spectral_radius` positive, noise levels zero or more, `alpha = dt / tau` in `(0, 1]`,
/// sparsities in `[0, 1)`, sizes at least 1.
///
/// # Names
///
/// A region or group name is an identifier (`d1`, `alm_exc`, `état`, `r#type`) or, for any other
/// name an mRNNTorch config may hold, a string: `region "alm-exc"[40]: exc in "alm cortex";` and
/// `"alm-exc" -> d1;`. Each region, input region and contiguous group gets a constant named
/// after it, made an ASCII identifier the same way everywhere (`mrnn expand` and `mrnn check`
/// included):
///
/// - ASCII letters are upper-cased; digits and `_` stay: `alm_exc` -> `ALM_EXC`;
/// - any other ASCII character becomes `_`: `alm-exc` -> `ALM_EXC`, `my region` -> `MY_REGION`;
/// - a non-ASCII character becomes `U` and its code point in hex: `état` -> `U00E9TAT`;
/// - a name that would start with a digit, or be `_` alone, gets a leading `_`: `1st` -> `_1ST`.
///
/// Two names that give the same constant (`a` and `A`, `alm-exc` and `alm_exc`), or a name that
/// gives a built-in one (`hidden` -> `HIDDEN`; also `INPUT`, `SEED`, `ARCHITECTURE`, and
/// anything starting with `__MRNN`), are an error under the second name, with a note at the first.
///
/// # From a JSON config
///
/// `mrnn!(pub Cbgtcl from "configs/CBGTCL.json" { activation: tanh, })` reads an mRNNTorch
/// config while compiling (the path is relative to your crate's `Cargo.toml`; cargo rebuilds when
/// the file changes). Its optional `"model"` object sets the dynamics; the settings in the braces
/// override it. Problems in the file are reported at the string literal with their
/// `file:line:column (json.path)`. A config stays mRNNTorch's format: its connections name
/// regions (a group name there is an error that lists the group's regions), and its region names
/// may be any string (constants are named as in [Names](#names)).
///
/// # What is generated
///
/// For `pub Cbgtcl { .. }`: `pub struct Cbgtcl` with
/// - `Cbgtcl::HIDDEN`, `Cbgtcl::INPUT`, `Cbgtcl::SEED`, and one `Range<usize>` per region named
///   after it (see [Names](#names): `Cbgtcl::D1` is `0..50`, its units in the hidden vector;
///   input regions' ranges are in the input vector), and one per group whose regions are
///   contiguous in the hidden vector (`Cbgtcl::ALM` for `alm_exc` and `alm_inhib` declared
///   one after the other; a group whose regions are apart has none);
/// - `Cbgtcl::ARCHITECTURE`, the checked architecture as a `const`;
/// - `new(&Device)`, `with_seed(u64, &Device)`, `from_network(Network)`, `forward(&Tensor)`,
///   `forward_with(&Tensor, &Forward)`, `network()`, `into_network()`, and `Deref` to
///   [`Network`](../mrnn_runtime/struct.Network.html) for everything else;
/// - checkpoints without losing the type: `Cbgtcl::load(path, &Device)`, and in place
///   `load_weights(path)` and `import_mrnntorch(path, prefix)`, each refusing another
///   architecture (there is no `&mut Network`: it could be swapped for one of another
///   architecture);
/// - `From<Cbgtcl> for Network` and `TryFrom<Network> for Cbgtcl`, so the type survives
///   training: `Model::new(net.into(), ..)`, then
///   `Cbgtcl::try_from(trainer.into_model().network)?`.
///
/// # Errors
///
/// Every broken rule is reported, in source order, under the token that breaks it; one mistake
/// gives one error (an unknown sign is not also a missing sign; `region d1` written twice where
/// connections use `d2` is one error at the duplicate, not one per use of `d2`). A network with
/// errors still generates its type and constants, so uses such as `Cbgtcl::THAL` elsewhere in
/// your crate add no errors of their own; the errors still stop the build. At most 100 errors
/// are shown per network.
///
/// Warnings (a recurrent region that no input, tonic drive or initial state reaches) are shown by
/// rustc as deprecation warnings under the region's name.
#[proc_macro]
pub fn mrnn(input: TokenStream) -> TokenStream {
    mrnn_ir::expand(input.into()).into()
}
