//! Link options of the agent's binary.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if target_os == "linux" && target_env == "gnu" {
        // Relative relocations packed (DT_RELR, glibc 2.36 and later): the dynamic loader
        // reads a few kilobytes at start instead of the 290 KB of `.rela.dyn`, pages that
        // otherwise stay in the agent's resident memory for as long as it runs.
        println!("cargo:rustc-link-arg-bin=tm-gateway=-Wl,-z,pack-relative-relocs");
    }
}
