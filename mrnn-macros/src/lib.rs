//! The `mrnn!` macro (docs being written).
use proc_macro::TokenStream;

/// Declares a multi-regional RNN.
#[proc_macro]
pub fn mrnn(input: TokenStream) -> TokenStream {
    mrnn_ir::expand(input.into()).into()
}
