//! Code generation phase: an [`Architecture`] becomes a Rust type with `const` sizes and
//! region ranges, the architecture as a `const`, and constructors and `forward` that call
//! `mrnn-runtime`. It never finds errors of its own.
//!
//! It also runs on networks the checker rejected, next to their `compile_error!`s: the type and
//! its constants then still exist, so that each use of `Net::THAL` does not add an error of its
//! own. Everything here therefore holds for any laid-out network, valid or not: no two items
//! share a name, every identifier is valid, every float is a valid token.
//!
//! Generated code names the runtime in exactly one place (`runtime_path`) and uses absolute
//! paths only, so user items called `Result`, `Ok` or `Tensor` cannot capture it.

use std::collections::HashSet;

use proc_macro2::{Literal, Span, TokenStream};
use quote::{format_ident, quote};
use syn::{Ident, Visibility};

use crate::check::{GENERATED_PREFIX, RESERVED_CONSTS, const_name};
use crate::diag::Diagnostic;
use crate::model::{Activation, Architecture, Dynamics, Settings, Sign, Source};

/// What a network's generated code needs besides its architecture.
#[derive(Debug)]
pub struct Target<'a> {
    /// Visibility of the generated type.
    pub vis: &'a Visibility,
    /// The type's name, spanned where the user wrote it.
    pub name: &'a Ident,
    /// The user's doc comment lines.
    pub docs: &'a [String],
    /// A JSON file to depend on (the `from` form), as an absolute path: generated code includes
    /// its bytes so that cargo rebuilds when it changes.
    pub tracked_file: Option<&'a str>,
}

/// The runtime crate as generated code names it: the single place that spells the path.
fn runtime_path() -> TokenStream {
    quote!(::mrnn_runtime)
}

fn private_path() -> TokenStream {
    let rt = runtime_path();
    quote!(#rt::__private)
}

/// Generates the network type for a checked architecture, plus one deprecation-warning item
/// per warning (stable Rust has no proc-macro warnings; using a `#[deprecated]` item is the
/// standard way to make rustc print one under the user's token).
#[must_use]
pub fn generate(
    arch: &Architecture,
    target: &Target<'_>,
    warnings: &[(Span, String)],
) -> TokenStream {
    let rt = runtime_path();
    let p = private_path();
    let name = target.name;
    let vis = target.vis;
    let docs = type_docs(arch, target.docs);
    let hidden = arch.hidden_size();
    let input = arch.input_size();
    let seed = arch.settings().seed;
    let name_str = arch.name();
    let settings = settings_tokens(arch.settings());
    let (regions, inputs, connections) = table_tokens(arch);
    // The compiler's choice of recurrent product, from the block structure it knows.
    let product = match arch.product() {
        crate::model::Product::Dense => quote!(#p::Product::Dense),
        crate::model::Product::Blocks => quote!(#p::Product::Blocks),
    };
    let range_consts = range_consts(arch);
    let tracked = target.tracked_file.map(|path| {
        quote! {
            // Makes cargo rebuild this crate when the config changes.
            const _: &[u8] = ::core::include_bytes!(#path);
        }
    });
    let warnings = warning_tokens(warnings);
    let api = api_surface(name, false);
    let hidden_doc = format!(" Size of the hidden state (all recurrent regions): {hidden}.");
    let input_doc = format!(" Size of the input vector (all input regions): {input}.");
    let seed_doc = format!(" The seed declared for masks and initial weights: {seed}.");
    let (hidden, input) = (Literal::usize_unsuffixed(hidden), Literal::usize_unsuffixed(input));
    let seed = Literal::u64_unsuffixed(seed);
    quote! {
        #(#[doc = #docs])*
        #[derive(::core::fmt::Debug)]
        #vis struct #name {
            __mrnn_network: #rt::Network,
        }

        #[allow(dead_code, clippy::unreadable_literal, clippy::excessive_precision)]
        impl #name {
            #[doc = #hidden_doc]
            pub const HIDDEN: ::core::primitive::usize = #hidden;
            #[doc = #input_doc]
            pub const INPUT: ::core::primitive::usize = #input;
            #[doc = #seed_doc]
            pub const SEED: ::core::primitive::u64 = #seed;
            #range_consts
            /// The checked architecture: regions with their offsets, connections, settings.
            pub const ARCHITECTURE: #p::Architecture = #p::Architecture::__from_checked_parts(
                #name_str,
                #settings,
                Self::__MRNN_REGIONS,
                Self::__MRNN_INPUTS,
                Self::__MRNN_CONNECTIONS,
                (#hidden, #input),
                #product,
            );
            const __MRNN_REGIONS: &'static [#p::Region] = &[#regions];
            const __MRNN_INPUTS: &'static [#p::InputRegion] = &[#inputs];
            const __MRNN_CONNECTIONS: &'static [#p::Connection] = &[#connections];
        }

        #api
        #tracked
        #warnings
    }
}

/// The methods every generated network has. On error the same surface is generated with
/// `unreachable!()` bodies, so the user sees the compiler's errors and not one per use site.
fn api_surface(name: &Ident, fallback: bool) -> TokenStream {
    let rt = runtime_path();
    let body = |real: TokenStream| if fallback { quote!(::core::unreachable!()) } else { real };
    let with_seed = body(quote! {
        ::core::result::Result::Ok(#name {
            __mrnn_network: #rt::Network::with_seed(Self::ARCHITECTURE, seed, device)?,
        })
    });
    let from_network = body(quote! {
        network.expect_architecture(&Self::ARCHITECTURE)?;
        ::core::result::Result::Ok(#name { __mrnn_network: network })
    });
    let new = body(quote!(Self::with_seed(Self::SEED, device)));
    let forward = body(quote!(self.__mrnn_network.forward(input, &#rt::Forward::default())));
    let forward_with = body(quote!(self.__mrnn_network.forward(input, options)));
    let load = body(quote!(Self::from_network(#rt::Network::load(path, device)?)));
    let load_weights = body(quote!(self.__mrnn_network.load_weights(path)));
    let import_mrnntorch = body(quote!(self.__mrnn_network.import_mrnntorch(path, prefix)));
    let try_from = body(quote!(Self::from_network(network)));
    quote! {
        #[allow(dead_code)]
        impl #name {
            /// Builds the network on `device` with the declared seed: masks and initial weights as
            /// the architecture prescribes.
            pub fn new(device: &#rt::Device) -> #rt::Result<Self> {
                #new
            }

            /// Builds the network on `device` with another seed (for many-seed sweeps).
            pub fn with_seed(seed: ::core::primitive::u64, device: &#rt::Device) -> #rt::Result<Self> {
                #with_seed
            }

            /// Wraps a network built elsewhere (loaded from a checkpoint, say); fails when its
            /// architecture is not this type's.
            pub fn from_network(network: #rt::Network) -> #rt::Result<Self> {
                #from_network
            }

            /// Runs the network on `input` (`[B, T, INPUT]` when batch first) from the declared
            /// initial condition, without noise.
            pub fn forward(&self, input: &#rt::Tensor) -> #rt::Result<#rt::Trajectory> {
                #forward
            }

            /// Runs the network with explicit options (initial state, stimulus, noise, ...).
            pub fn forward_with(
                &self,
                input: &#rt::Tensor,
                options: &#rt::Forward,
            ) -> #rt::Result<#rt::Trajectory> {
                #forward_with
            }

            /// The underlying network (parameters, region queries, checkpoints).
            pub fn network(&self) -> &#rt::Network {
                &self.__mrnn_network
            }

            /// Unwraps the underlying network.
            pub fn into_network(self) -> #rt::Network {
                self.__mrnn_network
            }

            /// Loads a checkpoint (a network's, or a training checkpoint's network) on `device`
            /// as this type; fails when it was saved from another architecture.
            pub fn load(
                path: impl ::core::convert::AsRef<::std::path::Path>,
                device: &#rt::Device,
            ) -> #rt::Result<Self> {
                #load
            }

            /// Loads the weights, masks and biases of a checkpoint into this network; fails,
            /// changing nothing, when it was saved from another architecture. (There is no
            /// `&mut` access to the underlying network: it could be replaced by one of another
            /// architecture.)
            pub fn load_weights(
                &mut self,
                path: impl ::core::convert::AsRef<::std::path::Path>,
            ) -> #rt::Result<()> {
                #load_weights
            }

            /// Imports the weights and masks of an mRNNTorch state dict file (`.pth` or
            /// `.safetensors`, tensors under `prefix`), checked against this architecture.
            pub fn import_mrnntorch(
                &mut self,
                path: impl ::core::convert::AsRef<::std::path::Path>,
                prefix: &::core::primitive::str,
            ) -> #rt::Result<()> {
                #import_mrnntorch
            }
        }

        impl ::core::ops::Deref for #name {
            type Target = #rt::Network;
            fn deref(&self) -> &#rt::Network {
                &self.__mrnn_network
            }
        }

        /// The untyped network, for what takes any network (a trainer's model, say).
        impl ::core::convert::From<#name> for #rt::Network {
            fn from(network: #name) -> #rt::Network {
                network.__mrnn_network
            }
        }

        /// The typed network again (after training, say); fails when the architecture is not
        /// this type's.
        impl ::core::convert::TryFrom<#rt::Network> for #name {
            type Error = #rt::Error;
            fn try_from(network: #rt::Network) -> #rt::Result<Self> {
                #try_from
            }
        }
    }
}

/// What `mrnn!` expands to when its input does not parse (a network that parses but breaks a
/// rule gets its full type, see [`crate::expand::generate`]): the errors, and a type with the
/// usual methods (bodies `unreachable!()`, never run because the crate does not compile) so that
/// uses of the type do not add errors of their own.
#[must_use]
pub fn fallback(vis: &Visibility, name: &Ident, errors: &TokenStream) -> TokenStream {
    let rt = runtime_path();
    let api = api_surface(name, true);
    quote! {
        #errors
        #vis struct #name {
            __mrnn_network: #rt::Network,
        }
        #[allow(dead_code)]
        impl #name {
            /// Unavailable: the network has errors.
            pub const HIDDEN: ::core::primitive::usize = 0;
            /// Unavailable: the network has errors.
            pub const INPUT: ::core::primitive::usize = 0;
        }
        #api
    }
}

fn warning_tokens(warnings: &[(Span, String)]) -> TokenStream {
    let items = warnings.iter().enumerate().map(|(i, (span, message))| {
        let item = format_ident!("__mrnn_warning_{}", i);
        // The use carries the user's span, so rustc shows the deprecation under their token.
        let use_it = format_ident!("__mrnn_warning_{}", i, span = *span);
        quote! {
            #[deprecated(note = #message)]
            #[allow(non_upper_case_globals)]
            const #item: () = ();
            let _ = #use_it;
        }
    });
    if warnings.is_empty() {
        return TokenStream::new();
    }
    quote! {
        const _: () = {
            #(#items)*
        };
    }
}

fn settings_tokens(s: &Settings) -> TokenStream {
    let p = private_path();
    let dynamics = match s.dynamics {
        Dynamics::Leaky { dt, tau } => {
            let (dt, tau) = (float(dt), float(tau));
            quote!(#p::Dynamics::Leaky { dt: #dt, tau: #tau })
        }
        Dynamics::Elman => quote!(#p::Dynamics::Elman),
    };
    let activation = match s.activation {
        Activation::Relu => quote!(Relu),
        Activation::Tanh => quote!(Tanh),
        Activation::Sigmoid => quote!(Sigmoid),
        Activation::Softplus => quote!(Softplus),
        Activation::Linear => quote!(Linear),
    };
    let (rec, inp) = (s.dale.recurrent, s.dale.input);
    let (act, noise_inp) = (float(s.noise.act), float(s.noise.inp));
    let rho = match s.spectral_radius {
        Some(r) => {
            let r = float(r);
            quote!(::core::option::Option::Some(#r))
        }
        None => quote!(::core::option::Option::None),
    };
    let batch_first = s.batch_first;
    let seed = Literal::u64_unsuffixed(s.seed);
    quote! {
        #p::Settings {
            dynamics: #dynamics,
            activation: #p::Activation::#activation,
            dale: #p::Dale { recurrent: #rec, input: #inp },
            noise: #p::Noise { act: #act, inp: #noise_inp },
            spectral_radius: #rho,
            batch_first: #batch_first,
            seed: #seed,
        }
    }
}

fn sign_tokens(sign: Sign) -> TokenStream {
    let p = private_path();
    match sign {
        Sign::Exc => quote!(#p::Sign::Exc),
        Sign::Inh => quote!(#p::Sign::Inh),
    }
}

/// An `f64` expression that round-trips exactly: a literal (`Literal` prints the shortest exact
/// form), or the `f64` constant for the non-finite values of a rejected network (`Literal`
/// panics on them).
fn float(value: f64) -> TokenStream {
    if value.is_nan() {
        quote!(::core::primitive::f64::NAN)
    } else if value == f64::INFINITY {
        quote!(::core::primitive::f64::INFINITY)
    } else if value == f64::NEG_INFINITY {
        quote!(::core::primitive::f64::NEG_INFINITY)
    } else {
        let literal = Literal::f64_unsuffixed(value);
        quote!(#literal)
    }
}

/// A name as inline code in generated docs, whatever characters it holds: control characters
/// (a newline would end the doc line's markdown) become U+FFFD, a name with backticks gets a
/// longer fence, and `|` is escaped (the names sit in table cells).
fn doc_code(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect::<String>()
        .replace('|', "\\|");
    let mut longest = 0;
    let mut run = 0;
    for c in clean.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    if longest == 0 {
        format!("`{clean}`")
    } else {
        let fence = "`".repeat(longest + 1);
        format!("{fence} {clean} {fence}")
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The doc comment of the generated type: the user's lines, then tables of regions and
/// connections so that `cargo doc` shows the architecture.
fn type_docs(arch: &Architecture, user: &[String]) -> Vec<String> {
    let mut docs: Vec<String> = user.to_vec();
    if !docs.is_empty() {
        docs.push(String::new());
    }
    let s = arch.settings();
    let dynamics = match s.dynamics {
        Dynamics::Leaky { dt, tau } => {
            format!("leaky (dt = {dt}, tau = {tau}, alpha = {})", dt / tau)
        }
        Dynamics::Elman => "Elman".to_owned(),
    };
    let dale = match (s.dale.recurrent, s.dale.input) {
        (true, true) => "recurrent and input weights",
        (true, false) => "recurrent weights",
        (false, true) => "input weights",
        (false, false) => "off",
    };
    docs.push(format!(
        " Generated by `mrnn!`: {} hidden units, {} inputs; {dynamics}, {}; Dale's law: {dale}.",
        arch.hidden_size(),
        arch.input_size(),
        s.activation.name()
    ));
    docs.push(String::new());
    docs.push(" | region | kind | units | range | sign | base firing | init |".to_owned());
    docs.push(" |---|---|---|---|---|---|---|".to_owned());
    for r in arch.regions() {
        let parent =
            r.parent.as_ref().map(|p| format!(" (in {})", doc_code(p))).unwrap_or_default();
        let learn = if r.learnable_bias { " (learned)" } else { "" };
        docs.push(format!(
            " | {}{parent} | recurrent | {} | {}..{} | {} | {}{learn} | {} |",
            doc_code(&r.name),
            r.units,
            r.offset,
            r.range().end,
            r.sign.describe(),
            r.base_firing,
            r.init
        ));
    }
    for r in arch.inputs() {
        docs.push(format!(
            " | {} | input | {} | {}..{} | {} | | |",
            doc_code(&r.name),
            r.units,
            r.offset,
            r.range().end,
            r.sign.describe()
        ));
    }
    docs.push(String::new());
    docs.push(" Connections (destination rows, source columns):".to_owned());
    docs.push(String::new());
    for c in arch.connections() {
        let src = arch.source_name(c.src);
        let dst = &arch.regions()[c.dst].name;
        let sign = arch.source_sign(c.src).describe();
        let sparsity = c.sparsity.map(|s| format!(", sparsity {s}")).unwrap_or_default();
        docs.push(format!(" - {}: {sign}{sparsity}", doc_code(&format!("{src} -> {dst}"))));
    }
    docs
}

/// Pretty-prints generated tokens as a Rust file (for `mrnn expand` and snapshots).
#[must_use]
pub fn pretty(tokens: &TokenStream) -> String {
    match syn::parse2::<syn::File>(tokens.clone()) {
        Ok(file) => prettyplease::unparse(&file),
        // Never expected: generated code always parses. Fall back to the raw tokens.
        Err(_) => tokens.to_string(),
    }
}

/// Turns warnings located at spans into (span, message) pairs for [`generate`].
#[must_use]
pub fn span_warnings(warnings: &[Diagnostic], fallback_span: Span) -> Vec<(Span, String)> {
    warnings
        .iter()
        .map(|w| {
            let span = match &w.loc {
                crate::diag::Loc::Tokens { start, .. } => *start,
                _ => fallback_span,
            };
            (span, w.message_with_help())
        })
        .collect()
}

/// The pretty-printed code of a network declared as `pub <type_name>` (for `mrnn expand` on a
/// JSON config, which has no tokens of its own). Fails when `type_name` is not an identifier.
pub fn expand_architecture(
    arch: &Architecture,
    type_name: &str,
    docs: &[String],
) -> Result<String, String> {
    if !crate::check::is_identifier(type_name) {
        return Err(format!("`{type_name}` cannot be a type name: it is not a Rust identifier"));
    }
    let vis = Visibility::Public(<syn::Token![pub]>::default());
    let name = Ident::new(type_name, Span::call_site());
    Ok(pretty(&generate(arch, &Target { vis: &vis, name: &name, docs, tracked_file: None }, &[])))
}

/// The architecture's regions, inputs and connections as comma-separated struct literals.
fn table_tokens(arch: &Architecture) -> (TokenStream, TokenStream, TokenStream) {
    let p = private_path();
    let regions = arch.regions().iter().map(|r| {
        let n = r.name.as_ref();
        let units = Literal::usize_unsuffixed(r.units);
        let offset = Literal::usize_unsuffixed(r.offset);
        let sign = sign_tokens(r.sign);
        let base_firing = float(r.base_firing);
        let init = float(r.init);
        let parent = match &r.parent {
            Some(parent) => {
                let parent = parent.as_ref();
                quote!(::core::option::Option::Some(#p::Cow::Borrowed(#parent)))
            }
            None => quote!(::core::option::Option::None),
        };
        let learnable = r.learnable_bias;
        quote! {
            #p::Region {
                name: #p::Cow::Borrowed(#n),
                units: #units,
                offset: #offset,
                sign: #sign,
                base_firing: #base_firing,
                init: #init,
                parent: #parent,
                learnable_bias: #learnable,
            }
        }
    });
    let inputs = arch.inputs().iter().map(|r| {
        let n = r.name.as_ref();
        let units = Literal::usize_unsuffixed(r.units);
        let offset = Literal::usize_unsuffixed(r.offset);
        let sign = sign_tokens(r.sign);
        quote!(#p::InputRegion { name: #p::Cow::Borrowed(#n), units: #units, offset: #offset, sign: #sign })
    });
    let connections = arch.connections().iter().map(|c| {
        let src = match c.src {
            Source::Recurrent(i) => {
                let i = Literal::usize_unsuffixed(i);
                quote!(#p::Source::Recurrent(#i))
            }
            Source::Input(i) => {
                let i = Literal::usize_unsuffixed(i);
                quote!(#p::Source::Input(#i))
            }
        };
        let dst = Literal::usize_unsuffixed(c.dst);
        let sparsity = match c.sparsity {
            Some(s) => {
                let s = float(s);
                quote!(::core::option::Option::Some(#s))
            }
            None => quote!(::core::option::Option::None),
        };
        quote!(#p::Connection { src: #src, dst: #dst, sparsity: #sparsity })
    });
    (quote!(#(#regions),*), quote!(#(#inputs),*), quote!(#(#connections),*))
}

/// One documented `Range<usize>` constant per region (hidden units), input region (input units)
/// and contiguous group (hidden units), named by [`const_name`]. The checker rejects networks
/// where two of them share a name; for those (generated next to their errors) only the first is
/// generated, so the names stay unique.
fn range_consts(arch: &Architecture) -> TokenStream {
    let mut taken: HashSet<String> = RESERVED_CONSTS.iter().map(|c| (*c).to_owned()).collect();
    let mut consts = Vec::new();
    let mut push = |name: &str, range: std::ops::Range<usize>, doc: String| {
        let constant = const_name(name);
        if constant.starts_with(GENERATED_PREFIX) || !taken.insert(constant.clone()) {
            return;
        }
        let ident = format_ident!("{}", constant);
        let (start, end) =
            (Literal::usize_unsuffixed(range.start), Literal::usize_unsuffixed(range.end));
        consts.push(quote! {
            #[doc = #doc]
            pub const #ident: ::core::ops::Range<::core::primitive::usize> = #start..#end;
        });
    };
    for r in arch.regions() {
        let doc = format!(
            " {}: {} {} unit{}, hidden units `{}..{}`{}.",
            doc_code(&r.name),
            r.units,
            r.sign.describe(),
            plural(r.units),
            r.offset,
            r.range().end,
            r.parent.as_ref().map(|p| format!(" (part of {})", doc_code(p))).unwrap_or_default()
        );
        push(&r.name, r.range(), doc);
    }
    for r in arch.inputs() {
        let doc = format!(
            " {}: input region, {} {} unit{}, input units `{}..{}`.",
            doc_code(&r.name),
            r.units,
            r.sign.describe(),
            plural(r.units),
            r.offset,
            r.range().end,
        );
        push(&r.name, r.range(), doc);
    }
    for (group, range) in arch.groups() {
        let Some(range) = range else { continue };
        // A group named like a region is an error reported by the checker; the region keeps
        // the name.
        if arch.region(group).is_some() || arch.input_region(group).is_some() {
            continue;
        }
        let members: Vec<String> = arch.children(group).map(|r| doc_code(&r.name)).collect();
        let doc = format!(
            " Group {}: regions {}, hidden units `{}..{}`.",
            doc_code(group),
            members.join(", "),
            range.start,
            range.end
        );
        push(group, range, doc);
    }
    quote!(#(#consts)*)
}
