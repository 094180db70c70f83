//! Parse phase: the `mrnn!` DSL as a syntax tree (`impl Parse` per node).
//!
//! ```text
//! /// docs
//! pub Name {                      // or: pub Name from "config.json" { settings }
//!     key: value,                 // settings: dynamics, activation, dale, noise, ...
//!     input iti[25]: exc;         // input regions
//!     region d1[50]: inh, base_firing = 1.0, init = 0.5, learnable_bias;
//!     region alm_exc[40]: exc in alm;
//!     d1, d2 -> gpe, snr (sparsity = 0.25, sign = inh);
//! }
//! ```
//!
//! The grammar is deliberately loose where meaning is checked later: setting values are kept as
//! tokens and region properties as `key [= value]`, so an unknown key or a bad value is reported by
//! lowering together with every other problem instead of stopping the parse.

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::{Attribute, Ident, LitFloat, LitInt, LitStr, Token, Visibility, braced, bracketed};

/// DSL keywords.
// The structs `custom_keyword!` generates carry no docs of their own.
#[allow(missing_docs)]
pub mod kw {
    syn::custom_keyword!(region);
    syn::custom_keyword!(input);
    syn::custom_keyword!(from);
}

/// A whole `mrnn!` invocation.
#[derive(Debug)]
pub struct Network {
    /// Outer attributes (doc comments).
    pub attrs: Vec<Attribute>,
    /// Visibility of the generated type.
    pub vis: Visibility,
    /// Name of the generated type.
    pub name: Ident,
    /// `from "path.json"`: read regions and connections from an mRNNTorch config.
    pub from: Option<LitStr>,
    /// Settings, regions and connections in written order.
    pub items: Vec<Item>,
}

/// One item of the body.
#[derive(Debug)]
pub enum Item {
    /// `key: value,`
    Setting(Setting),
    /// `region name[n]: props;`
    Region(Region),
    /// `input name[n]: sign;`
    Input(Region),
    /// `a, b -> c, d (options);`
    Connection(Connection),
}

/// `key: value` (value kept as tokens, parsed per key by lowering).
#[derive(Debug)]
pub struct Setting {
    /// The key.
    pub key: Ident,
    /// Everything up to the next top-level comma.
    pub value: TokenStream,
    /// Span of the value (the key's span when the value is empty).
    pub value_span: Span,
}

/// `region name[n]: props;` or `input name[n]: props;`
#[derive(Debug)]
pub struct Region {
    /// The `region`/`input` keyword.
    pub keyword: Span,
    /// Region name.
    pub name: Ident,
    /// Size literal.
    pub size: LitInt,
    /// Properties after the colon.
    pub props: Vec<Prop>,
}

/// One property: `exc`, `learnable_bias`, `in alm`, `base_firing = 1.0`.
#[derive(Debug)]
pub struct Prop {
    /// The key (`in` is represented as an identifier spelled `in`).
    pub key: Ident,
    /// Its value, if any.
    pub value: Option<Value>,
}

/// A property or option value.
#[derive(Debug, Clone)]
pub enum Value {
    /// A number, possibly negative.
    Number(Number),
    /// A name (a sign keyword, a parent region).
    Ident(Ident),
}

impl Value {
    /// Where the value was written.
    #[must_use]
    pub fn span(&self) -> Span {
        match self {
            Value::Number(n) => n.start,
            Value::Ident(i) => i.span(),
        }
    }
}

/// A numeric literal with an optional leading minus.
#[derive(Debug, Clone)]
pub struct Number {
    /// The value.
    pub value: f64,
    /// The literal as written (for messages).
    pub text: String,
    /// First token (`-` or the literal).
    pub start: Span,
    /// The literal.
    pub end: Span,
}

/// `sources -> targets (options);`
#[derive(Debug)]
pub struct Connection {
    /// Source region names.
    pub sources: Vec<Ident>,
    /// Destination region names.
    pub targets: Vec<Ident>,
    /// `(key = value, ...)`.
    pub options: Vec<Prop>,
}

impl Parse for Network {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let name: Ident = input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected the network's type name, as in `mrnn! { pub Cbgtcl { ... } }`",
            )
        })?;
        let from = if input.peek(kw::from) {
            input.parse::<kw::from>()?;
            Some(input.parse::<LitStr>()?)
        } else {
            None
        };
        let mut items = Vec::new();
        if from.is_none() || input.peek(syn::token::Brace) {
            let body;
            braced!(body in input);
            while !body.is_empty() {
                items.push(body.parse()?);
            }
        }
        if !input.is_empty() {
            return Err(input.error(
                "unexpected tokens after the network body: one `mrnn!` declares one network",
            ));
        }
        Ok(Network { attrs, vis, name, from, items })
    }
}

impl Parse for Item {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.peek(kw::region) && input.peek2(Ident) {
            let keyword = input.parse::<kw::region>()?.span;
            return Ok(Item::Region(parse_region(input, keyword)?));
        }
        if input.peek(kw::input) && input.peek2(Ident) {
            let keyword = input.parse::<kw::input>()?.span;
            return Ok(Item::Input(parse_region(input, keyword)?));
        }
        if input.peek(Ident::peek_any) && input.peek2(Token![:]) && !input.peek2(Token![::]) {
            return Ok(Item::Setting(input.parse()?));
        }
        if input.peek(Ident::peek_any) {
            return Ok(Item::Connection(input.parse()?));
        }
        Err(input.error(
            "expected a setting (`key: value,`), a region (`region name[units]: exc;`), an input (`input name[units]: exc;`) or a connection (`a -> b;`)",
        ))
    }
}

impl Parse for Setting {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key = input.call(Ident::parse_any)?;
        input.parse::<Token![:]>()?;
        let mut value = TokenStream::new();
        while !input.is_empty() && !input.peek(Token![,]) && !input.peek(Token![;]) {
            let tt: proc_macro2::TokenTree = input.parse()?;
            value.extend(std::iter::once(tt));
        }
        if input.peek(Token![;]) {
            return Err(input.error("settings end with `,`; `;` ends regions and connections"));
        }
        if !input.is_empty() {
            input.parse::<Token![,]>()?;
        }
        let value_span = value.clone().into_iter().next().map_or(key.span(), |t| t.span());
        if value.is_empty() {
            return Err(syn::Error::new(key.span(), format!("setting `{key}` has no value")));
        }
        Ok(Setting { key, value, value_span })
    }
}

fn parse_region(input: ParseStream<'_>, keyword: Span) -> syn::Result<Region> {
    let name: Ident = input.parse()?;
    let content;
    let bracket = bracketed!(content in input);
    if content.is_empty() {
        return Err(syn::Error::new(
            bracket.span.join(),
            format!("region `{name}` needs a size: `{name}[10]`"),
        ));
    }
    let size: LitInt = content.parse().map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("the size of region `{name}` must be a whole number of units"),
        )
    })?;
    if !content.is_empty() {
        return Err(content.error("expected `]` after the region size"));
    }
    let mut props = Vec::new();
    if input.peek(Token![:]) {
        input.parse::<Token![:]>()?;
        loop {
            // `exc in alm` is two properties without a comma between them.
            props.push(parse_prop(input)?);
            if input.peek(Token![in]) {
                continue;
            }
            if input.peek(Token![,]) {
                input.parse::<Token![,]>()?;
                continue;
            }
            break;
        }
    }
    if !input.peek(Token![;]) {
        return Err(input.error(format!(
            "expected `;` after region `{name}` (properties are separated by `,`)"
        )));
    }
    input.parse::<Token![;]>()?;
    Ok(Region { keyword, name, size, props })
}

fn parse_prop(input: ParseStream<'_>) -> syn::Result<Prop> {
    if input.peek(Token![in]) {
        let span = input.parse::<Token![in]>()?.span;
        let parent: Ident = input.parse().map_err(|e| {
            syn::Error::new(e.span(), "expected the parent region's name after `in`")
        })?;
        return Ok(Prop { key: Ident::new("in", span), value: Some(Value::Ident(parent)) });
    }
    let key = input.call(Ident::parse_any).map_err(|e| {
        syn::Error::new(
            e.span(),
            "expected a region property: `exc`, `inh`, `in parent`, `base_firing = 1.0`, `init = 0.0` or `learnable_bias`",
        )
    })?;
    let value = if input.peek(Token![=]) {
        input.parse::<Token![=]>()?;
        Some(input.parse()?)
    } else {
        None
    };
    Ok(Prop { key, value })
}

impl Parse for Value {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.peek(Ident::peek_any) {
            return Ok(Value::Ident(input.call(Ident::parse_any)?));
        }
        Ok(Value::Number(input.parse()?))
    }
}

impl Parse for Number {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let minus =
            if input.peek(Token![-]) { Some(input.parse::<Token![-]>()?.span) } else { None };
        let lookahead = input.lookahead1();
        let (value, text, end) = if lookahead.peek(LitFloat) {
            let lit: LitFloat = input.parse()?;
            (lit.base10_parse::<f64>()?, lit.base10_digits().to_owned(), lit.span())
        } else if lookahead.peek(LitInt) {
            let lit: LitInt = input.parse()?;
            (lit.base10_parse::<f64>()?, lit.base10_digits().to_owned(), lit.span())
        } else {
            return Err(lookahead.error());
        };
        let (value, text) =
            if minus.is_some() { (-value, format!("-{text}")) } else { (value, text) };
        Ok(Number { value, text, start: minus.unwrap_or(end), end })
    }
}

impl Parse for Connection {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let sources = parse_names(input, "source")?;
        if !input.peek(Token![->]) {
            return Err(input.error(format!(
                "expected `->` after `{}`: a connection is `source -> destination;`",
                sources.last().map(ToString::to_string).unwrap_or_default()
            )));
        }
        let arrow = input.parse::<Token![->]>()?;
        if !input.peek(Ident::peek_any) {
            return Err(syn::Error::new_spanned(
                arrow,
                "connection has no destination region: write `source -> destination;`",
            ));
        }
        let targets = parse_names(input, "destination")?;
        let mut options = Vec::new();
        if input.peek(syn::token::Paren) {
            let content;
            syn::parenthesized!(content in input);
            while !content.is_empty() {
                let key = content.call(Ident::parse_any)?;
                content.parse::<Token![=]>().map_err(|e| {
                    syn::Error::new(
                        e.span(),
                        format!("expected `=` after `{key}`, as in `(sparsity = 0.9)`"),
                    )
                })?;
                let value = content.parse()?;
                options.push(Prop { key, value: Some(value) });
                if content.is_empty() {
                    break;
                }
                content.parse::<Token![,]>()?;
            }
        }
        if !input.peek(Token![;]) {
            return Err(input.error("expected `;` after the connection"));
        }
        input.parse::<Token![;]>()?;
        Ok(Connection { sources, targets, options })
    }
}

fn parse_names(input: ParseStream<'_>, what: &str) -> syn::Result<Vec<Ident>> {
    let mut names = vec![input.call(Ident::parse_any)?];
    while input.peek(Token![,]) {
        input.parse::<Token![,]>()?;
        if !input.peek(Ident::peek_any) {
            return Err(input.error(format!("expected a {what} region name after `,`")));
        }
        names.push(input.call(Ident::parse_any)?);
    }
    Ok(names)
}

/// The doc comment lines of a list of attributes, or the first attribute that is not a doc
/// comment (the generated type takes no other attributes).
pub fn doc_lines(attrs: &[Attribute]) -> Result<Vec<String>, &Attribute> {
    let mut docs = Vec::new();
    for attr in attrs {
        if attr.path().is_ident("doc")
            && let syn::Meta::NameValue(nv) = &attr.meta
            && let syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) = &nv.value
        {
            docs.push(s.value());
            continue;
        }
        return Err(attr);
    }
    Ok(docs)
}
