//! The copilot: the edge function that turns a closed region's responses into 404s so players
//! move to another region. It is compiled to WebAssembly and run by a small Node.js handler on
//! Lambda@Edge (see DESIGN.md, "Lambda@Edge"). The crate is a workspace member from the start so
//! its build and lints run in CI; its logic lands with the copilot work.
