//! `#[derive(Parameters)]` for [`hopfield-layers`](https://docs.rs/hopfield-layers): generates `visit` and
//! `visit_mut` of `hopfield_layers::params::Parameters<B>` from a struct's fields, so that every parameter
//! struct, module and model names, visits and zeroes its tensors without a hand-written mirror. Use it
//! through `hopfield_layers::Parameters` (the trait and the derive under one name).
//!
//! Fields are classified by type:
//! - `B::Tensor` (any path ending in `Tensor`): a tensor named after the field;
//! - `Option<…Tensor>`: a tensor when present;
//! - `Vec<T>`: children named `field.0`, `field.1`, …;
//! - `Option<T>` and any other `T`: a child implementing `Parameters<B>`, its names under `field.`.
//!
//! Attributes, `#[param(...)]` on a field:
//! - `skip`: not a parameter (configuration, sizes, flags);
//! - `rename = "a.b"`: the name (prefix) instead of the field's name;
//! - `flatten`: a child's names without prefix (a module whose tensors live in a `params` field);
//! - `trainable = expr`: a tensor's trainable flag, an expression over `self` (default `true`);
//! - `map_names = path`: a function `fn(&str) -> String` applied to a child's names (before the prefix).
//!
//! The backend is the struct's first type parameter.
//!
//! # The path of `hopfield-layers`
//!
//! The generated code names the layers crate by the key under which the deriving crate depends on it, read
//! from its `Cargo.toml` (`hopfield-layers = "0.1"` → `::hopfield_layers`; a renamed dependency,
//! `hl = { package = "hopfield-layers", … }` → `::hl`), as serde-like derives do with `proc-macro-crate`.
//! Where that cannot work (the layers crate reached through a re-export of another crate), name the path:
//!
//! ```ignore
//! #[derive(Parameters)]
//! #[parameters(crate = "my_framework::hopfield_layers")]
//! struct Head<B: Backend> { /* … */ }
//! ```
use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use proc_macro_crate::{crate_name, FoundCrate};
use quote::quote;
use syn::{parse_macro_input, Data, DeriveInput, Expr, Fields, GenericArgument, LitStr, Path, PathArguments, Type};

/// The layers crate's package name, looked up in the deriving crate's `Cargo.toml`.
const PACKAGE: &str = "hopfield-layers";
/// Its library name: the path when the package is not found under another key, and the name by which the
/// layers crate refers to itself (`extern crate self as hopfield_layers`).
const LIBRARY: &str = "hopfield_layers";

/// The path of `hopfield-layers` in the generated code: `#[parameters(crate = "...")]` when given, else the
/// dependency's key in the deriving crate's `Cargo.toml`, else `::hopfield_layers`.
fn crate_path(input: &DeriveInput) -> syn::Result<Tokens> {
    let mut explicit: Option<Path> = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("parameters")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("crate") {
                explicit = Some(meta.value()?.parse::<LitStr>()?.parse::<Path>()?);
                Ok(())
            } else {
                Err(meta.error("expected `crate = \"path\"`"))
            }
        })?;
    }
    if let Some(path) = explicit {
        return Ok(quote!(#path));
    }
    // `Itself`: inside the layers crate (which names itself `hopfield_layers`) or one of its examples,
    // benches or doctests (where the library is the extern crate `hopfield_layers`). Not found: a
    // dependency this lookup cannot see (a re-export, a manifest it cannot read), so the library's own name.
    let name = match crate_name(PACKAGE) {
        Ok(FoundCrate::Name(name)) => name,
        Ok(FoundCrate::Itself) | Err(_) => LIBRARY.to_string(),
    };
    let ident = syn::Ident::new(&name, proc_macro2::Span::call_site());
    Ok(quote!(::#ident))
}

#[derive(Default)]
struct FieldAttrs {
    skip: bool,
    flatten: bool,
    rename: Option<String>,
    trainable: Option<Expr>,
    map_names: Option<Path>,
}

fn field_attrs(field: &syn::Field) -> syn::Result<FieldAttrs> {
    let mut out = FieldAttrs::default();
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("param")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("skip") {
                out.skip = true;
            } else if meta.path.is_ident("flatten") {
                out.flatten = true;
            } else if meta.path.is_ident("rename") {
                out.rename = Some(meta.value()?.parse::<LitStr>()?.value());
            } else if meta.path.is_ident("trainable") {
                out.trainable = Some(meta.value()?.parse::<Expr>()?);
            } else if meta.path.is_ident("map_names") {
                out.map_names = Some(meta.value()?.parse::<Path>()?);
            } else {
                return Err(
                    meta.error("expected one of: skip, flatten, rename = \"..\", trainable = expr, map_names = path")
                );
            }
            Ok(())
        })?;
    }
    Ok(out)
}

/// The single generic argument of `Outer<T>` when the type's last segment is `outer`.
fn inner_of<'a>(ty: &'a Type, outer: &str) -> Option<&'a Type> {
    let Type::Path(p) = ty else { return None };
    let seg = p.path.segments.last()?;
    if seg.ident != outer {
        return None;
    }
    match &seg.arguments {
        PathArguments::AngleBracketed(a) => a.args.iter().find_map(|g| match g {
            GenericArgument::Type(t) => Some(t),
            _ => None,
        }),
        _ => None,
    }
}

fn is_tensor(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Tensor"))
}

enum Kind {
    Tensor,
    OptionTensor,
    Child,
    OptionChild,
    VecChild,
}

fn kind(ty: &Type) -> Kind {
    if is_tensor(ty) {
        Kind::Tensor
    } else if let Some(inner) = inner_of(ty, "Option") {
        if is_tensor(inner) {
            Kind::OptionTensor
        } else {
            Kind::OptionChild
        }
    } else if inner_of(ty, "Vec").is_some() {
        Kind::VecChild
    } else {
        Kind::Child
    }
}

/// One field's visit, for `visit` (`mutable = false`) or `visit_mut`.
fn visit_field(
    field: &syn::Field,
    attrs: &FieldAttrs,
    mutable: bool,
    krate: &Tokens,
    backend: &syn::Ident,
) -> syn::Result<Tokens> {
    let ident = field.ident.as_ref().expect("named field");
    let name = attrs.rename.clone().unwrap_or_else(|| ident.to_string());
    let (r, iter) = if mutable { (quote!(&mut), quote!(iter_mut)) } else { (quote!(&), quote!(iter)) };
    let trainable = attrs.trainable.as_ref().map_or_else(|| quote!(true), |e| quote!(#e));
    // A child's names: `prefix.name`, or `name` alone when flattened; optionally mapped first.
    let child = |value: Tokens, prefix: Tokens, flatten: bool| -> Tokens {
        let mapped = match &attrs.map_names {
            Some(map) => quote!(#map(__n)),
            None => quote!(__n),
        };
        let visit = if mutable { quote!(visit_mut) } else { quote!(visit) };
        if flatten && attrs.map_names.is_none() {
            return quote!(#krate::params::Parameters::<#backend>::#visit(#value, f););
        }
        let full = if flatten {
            quote!(::std::string::ToString::to_string(&#mapped))
        } else {
            quote!(::std::format!("{}.{}", #prefix, #mapped))
        };
        quote! {
            #krate::params::Parameters::<#backend>::#visit(#value, &mut |__n, __t, __tr| f(&#full, __t, __tr));
        }
    };
    let lit = LitStr::new(&name, ident.span());
    Ok(match kind(&field.ty) {
        Kind::Tensor => quote! {{
            let __tr: bool = #trainable;
            f(#lit, #r self.#ident, __tr);
        }},
        Kind::OptionTensor => quote! {{
            let __tr: bool = #trainable;
            if let ::std::option::Option::Some(__t) = #r self.#ident {
                f(#lit, __t, __tr);
            }
        }},
        Kind::Child => child(quote!(#r self.#ident), quote!(#lit), attrs.flatten),
        Kind::OptionChild => {
            let body = child(quote!(__c), quote!(#lit), attrs.flatten);
            quote! {
                if let ::std::option::Option::Some(__c) = #r self.#ident {
                    #body
                }
            }
        }
        Kind::VecChild => {
            if attrs.flatten {
                return Err(syn::Error::new_spanned(ident, "`flatten` does not apply to a Vec of children"));
            }
            let body = child(quote!(__c), quote!(::std::format!("{}.{}", #lit, __i)), false);
            quote! {
                for (__i, __c) in self.#ident.#iter().enumerate() {
                    #body
                }
            }
        }
    })
}

fn expand(input: &DeriveInput) -> syn::Result<Tokens> {
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(&input.ident, "#[derive(Parameters)] supports structs with named fields"));
    };
    let Fields::Named(fields) = &data.fields else {
        return Err(syn::Error::new_spanned(&input.ident, "#[derive(Parameters)] supports structs with named fields"));
    };
    let backend = input.generics.type_params().next().map(|p| p.ident.clone()).ok_or_else(|| {
        syn::Error::new_spanned(&input.ident, "#[derive(Parameters)] needs the backend as the first type parameter")
    })?;
    let krate = crate_path(input)?;
    let (mut visits, mut visits_mut) = (Vec::new(), Vec::new());
    for field in &fields.named {
        let attrs = field_attrs(field)?;
        if attrs.skip {
            continue;
        }
        visits.push(visit_field(field, &attrs, false, &krate, &backend)?);
        visits_mut.push(visit_field(field, &attrs, true, &krate, &backend)?);
    }
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics #krate::params::Parameters<#backend> for #ident #ty_generics #where_clause {
            fn visit<'__a>(
                &'__a self,
                f: &mut dyn FnMut(&str, &'__a <#backend as #krate::Backend>::Tensor, bool),
            ) {
                #(#visits)*
            }
            fn visit_mut(&mut self, f: &mut dyn FnMut(&str, &mut <#backend as #krate::Backend>::Tensor, bool)) {
                #(#visits_mut)*
            }
        }
    })
}

/// Derive `hopfield_layers::params::Parameters` (see the crate docs for the field rules, the attributes and
/// `#[parameters(crate = "...")]`).
#[proc_macro_derive(Parameters, attributes(param, parameters))]
pub fn derive_parameters(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input).unwrap_or_else(|e| e.to_compile_error()).into()
}
