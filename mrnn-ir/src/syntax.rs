//! Parse phase: the `mrnn!` DSL as a syntax tree (`impl Parse` per node).
//!
//! ```text
//! /// docs
//! pub Name {                      // or: pub Name from "config.json" { settings }
//!     key: value,                 // settings: dynamics, activation, dale, noise, ...
//!     input iti[25]: exc;         // input regions
//!     region d1[50]: inh, base_firing = 1.0, init = 0.5, learnable_bias;
//!     region alm_exc[40]: exc in alm;
//!     region "alm-inh"[10]: inh in alm;  // any name, as a string
//!     d1, d2 -> gpe, snr (sparsity = 0.25, sign = inh);
//!     alm -> d1;                         // a group stands for its regions
//! }
//! ```
//!
//! The grammar is deliberately loose where meaning is checked later: setting values are kept as
//! tokens and region properties as `key [= value]`, so an unknown key or a bad value is reported by
//! lowering together with every other problem instead of stopping the parse.
//!
//! Nothing here calls syn's recursive parsers (expressions, types, attributes' meta): the depth of
//! the recursion is fixed by the grammar, never by the input, so a deeply nested input cannot
//! overflow the stack (attributes are read token by token for that reason).

use std::fmt;

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::{Ident, LitFloat, LitInt, LitStr, Token, Visibility, braced, bracketed};

/// How deeply brackets may nest in the tokens of an `mrnn!` invocation: the grammar needs two
/// levels (`Net { dynamics: leaky(dt = 1.0) }`); anything far deeper is a mistake, refused
/// before parsing.
pub const MAX_NESTING: usize = 32;

/// The opening bracket of the first group nested deeper than `limit` levels (the top level's
/// groups are level 1), found without recursion.
#[must_use]
pub fn too_deep(tokens: &TokenStream, limit: usize) -> Option<Span> {
    let mut stack = vec![tokens.clone().into_iter()];
    loop {
        let depth = stack.len();
        let next = stack.last_mut()?.next();
        match next {
            Some(proc_macro2::TokenTree::Group(group)) => {
                if depth > limit {
                    return Some(group.span_open());
                }
                stack.push(group.stream().into_iter());
            }
            Some(_) => {}
            None => {
                stack.pop();
            }
        }
    }
}

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
    pub attrs: Vec<Attr>,
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

/// An outer attribute of the network.
#[derive(Debug, Clone)]
pub enum Attr {
    /// A doc comment: `/// text` or `#[doc = "text"]`.
    Doc(String),
    /// Any other attribute (`mrnn!` takes none), from its `#` to its `]`.
    Other(Span, Span),
}

/// A region or group name as written: an identifier (`d1`, `état`, `r#type`) or, for names that
/// are not identifiers (mRNNTorch configs allow any string), a string literal (`"alm-exc"`).
#[derive(Debug, Clone)]
pub struct Name {
    /// The name (a raw identifier without its `r#`, a string's contents).
    pub value: String,
    /// Where it was written.
    pub span: Span,
}

impl Name {
    /// Whether the next token starts a name.
    fn peek(input: ParseStream<'_>) -> bool {
        input.peek(Ident::peek_any) || input.peek(LitStr)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

impl Parse for Name {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.peek(LitStr) {
            let lit: LitStr = input.parse()?;
            return Ok(Name { value: lit.value(), span: lit.span() });
        }
        let ident = input.call(Ident::parse_any)?;
        Ok(Name { value: ident.unraw().to_string(), span: ident.span() })
    }
}

/// `region name[n]: props;` or `input name[n]: props;`
#[derive(Debug)]
pub struct Region {
    /// The `region`/`input` keyword.
    pub keyword: Span,
    /// Region name.
    pub name: Name,
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
    /// A word (a sign keyword).
    Ident(Ident),
    /// The group after `in`.
    Name(Name),
}

impl Value {
    /// Where the value was written.
    #[must_use]
    pub fn span(&self) -> Span {
        match self {
            Value::Number(n) => n.start,
            Value::Ident(i) => i.span(),
            Value::Name(n) => n.span,
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
    /// Source region (or group) names.
    pub sources: Vec<Name>,
    /// Destination region (or group) names.
    pub targets: Vec<Name>,
    /// `(key = value, ...)`.
    pub options: Vec<Prop>,
}

/// Reads the outer attributes `#[...]` token by token: a doc comment is `doc = "text"`, anything
/// else is kept as [`Attr::Other`] for lowering to reject.
pub fn parse_attrs(input: ParseStream<'_>) -> syn::Result<Vec<Attr>> {
    let mut attrs = Vec::new();
    while input.peek(Token![#]) {
        let pound = input.parse::<Token![#]>()?.span;
        let content;
        let bracket = bracketed!(content in input);
        let doc = if content.peek(Ident) && content.peek2(Token![=]) && content.peek3(LitStr) {
            let key: Ident = content.parse()?;
            content.parse::<Token![=]>()?;
            let text: LitStr = content.parse()?;
            (key == "doc" && content.is_empty()).then(|| text.value())
        } else {
            None
        };
        // Whatever is left belongs to an attribute that is not a doc comment.
        content.parse::<TokenStream>()?;
        attrs.push(match doc {
            Some(text) => Attr::Doc(text),
            None => Attr::Other(pound, bracket.span.close()),
        });
    }
    Ok(attrs)
}

impl Parse for Network {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = parse_attrs(input)?;
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
        let name_follows =
            |input: ParseStream<'_>| input.peek2(Ident::peek_any) || input.peek2(LitStr);
        if input.peek(kw::region) && name_follows(input) {
            let keyword = input.parse::<kw::region>()?.span;
            return Ok(Item::Region(parse_region(input, keyword)?));
        }
        if input.peek(kw::input) && name_follows(input) {
            let keyword = input.parse::<kw::input>()?.span;
            return Ok(Item::Input(parse_region(input, keyword)?));
        }
        if input.peek(Ident::peek_any) && input.peek2(Token![:]) && !input.peek2(Token![::]) {
            return Ok(Item::Setting(input.parse()?));
        }
        if Name::peek(input) {
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
    let name: Name = input.parse()?;
    if !input.peek(syn::token::Bracket) {
        return Err(input.error(format!("expected the size of region `{name}`: `{name}[10]`")));
    }
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
        if !Name::peek(input) {
            return Err(input.error("expected the name of the group after `in`"));
        }
        let parent: Name = input.parse()?;
        return Ok(Prop { key: Ident::new("in", span), value: Some(Value::Name(parent)) });
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
        if !Name::peek(input) {
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

fn parse_names(input: ParseStream<'_>, what: &str) -> syn::Result<Vec<Name>> {
    let mut names = vec![input.parse()?];
    while input.peek(Token![,]) {
        input.parse::<Token![,]>()?;
        if !Name::peek(input) {
            return Err(input.error(format!("expected a {what} region name after `,`")));
        }
        names.push(input.parse()?);
    }
    Ok(names)
}

/// The doc comment lines of a list of attributes, or the span (`#` to `]`) of the first attribute
/// that is not a doc comment (the generated type takes no other attributes).
pub fn doc_lines(attrs: &[Attr]) -> Result<Vec<String>, (Span, Span)> {
    attrs
        .iter()
        .map(|attr| match attr {
            Attr::Doc(text) => Ok(text.clone()),
            Attr::Other(start, end) => Err((*start, *end)),
        })
        .collect()
}
