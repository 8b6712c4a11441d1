//! [`KernelConfig`]: the one description of a kernel's configuration (family + tile fields).
//! The IR attributes of a `fused_sparse_gemm`, the layer plan, codegen's `KernelSpec` and the
//! runtime's kernel info all hold this value; [`KernelConfig::write_attrs`] and
//! [`KernelConfig::read_attrs`] are the only code that knows the attribute spelling.
//!
//! GEMM naming: `Y[M×N] = X[M×K]·Wᵀ`, M = tokens, N = out features.

use serde::{Deserialize, Serialize};
use sparseflow_core::DType;

use crate::attrs::{Attr, Attrs};

/// The tile attribute names of `fused_sparse_gemm`, in printing order.
pub const TILE_ATTRS: [&str; 7] = [
    "family", "tile_m", "tile_n", "tile_k", "warps", "stages", "split_k",
];

/// One point of a family's configuration space, the family named by `F`: a registered
/// family's `&'static str` ([`KernelConfig`]) or an owned name read from a file
/// (`tuning::ConfigRecord`, resolved against the registry before use). One struct, so the tile
/// fields are written once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelConfigOf<F> {
    /// The family's registry name (IR `family` attribute).
    pub family: F,
    /// Tokens per block.
    pub tile_m: u32,
    /// Output features per block.
    pub tile_n: u32,
    /// Reduction depth per pipeline step (dense K units).
    pub tile_k: u32,
    pub warps: u32,
    /// Pipeline depth.
    pub stages: u32,
    pub split_k: u32,
}

/// A configuration of a registered family (the form planning, codegen and the runtime hold).
pub type KernelConfig = KernelConfigOf<&'static str>;

impl<F> KernelConfigOf<F> {
    /// The same tiles with the family named differently (owned for a file, resolved from one).
    pub fn with_family<G>(self, family: G) -> KernelConfigOf<G> {
        KernelConfigOf {
            family,
            tile_m: self.tile_m,
            tile_n: self.tile_n,
            tile_k: self.tile_k,
            warps: self.warps,
            stages: self.stages,
            split_k: self.split_k,
        }
    }

    /// The numeric fields with their attribute names, in [`TILE_ATTRS`] order.
    pub fn fields(&self) -> [(&'static str, u32); 6] {
        [
            ("tile_m", self.tile_m),
            ("tile_n", self.tile_n),
            ("tile_k", self.tile_k),
            ("warps", self.warps),
            ("stages", self.stages),
            ("split_k", self.split_k),
        ]
    }

    /// `tile 64x128x64 warps=4 stages=3 split_k=1`, for logs and `--explain`.
    pub fn describe_tiles(&self) -> String {
        format!(
            "tile {}x{}x{} warps={} stages={} split_k={}",
            self.tile_m, self.tile_n, self.tile_k, self.warps, self.stages, self.split_k
        )
    }
}

/// The values one family's template can be instantiated with: every combination is a
/// candidate (the family's own rules then prune it, `FamilyModel::check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigSpace {
    pub tile_m: &'static [u32],
    pub tile_n: &'static [u32],
    pub tile_k: &'static [u32],
    pub warps: &'static [u32],
    pub stages: &'static [u32],
    pub split_k: &'static [u32],
}

/// The problem a config is checked against; `m = None` when M is dynamic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmShape {
    pub m: Option<u64>,
    pub n: u64,
    pub k: u64,
    pub dtype: DType,
}

impl KernelConfig {
    /// Sets the tile attributes on an op (replacing existing ones in place).
    pub fn write_attrs(&self, attrs: &mut Attrs) {
        attrs.set("family", Attr::Str(self.family.to_string()));
        for (key, v) in self.fields() {
            attrs.set(key, Attr::Int(i64::from(v)));
        }
    }

    /// Reads the tile attributes back. `family` maps the attribute's string to the registered
    /// family's name (`None`: unknown family). `Err` names what is missing or malformed.
    pub fn read_attrs(
        attrs: &Attrs,
        family: impl Fn(&str) -> Option<&'static str>,
    ) -> Result<KernelConfig, String> {
        let int = |key: &str| {
            attrs
                .get(key)
                .and_then(Attr::as_int)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| format!("'{key}' must be a non-negative integer"))
        };
        let name = attrs
            .get("family")
            .and_then(Attr::as_str)
            .ok_or("'family' must be a string")?;
        let family = family(name).ok_or_else(|| format!("unknown kernel family '{name}'"))?;
        Ok(KernelConfig {
            family,
            tile_m: int("tile_m")?,
            tile_n: int("tile_n")?,
            tile_k: int("tile_k")?,
            warps: int("warps")?,
            stages: int("stages")?,
            split_k: int("split_k")?,
        })
    }

    /// `Err` names the first field whose value is not in `space`.
    pub fn check_space(&self, space: &ConfigSpace) -> Result<(), String> {
        let allowed = [
            space.tile_m,
            space.tile_n,
            space.tile_k,
            space.warps,
            space.stages,
            space.split_k,
        ];
        for ((name, value), allowed) in self.fields().into_iter().zip(allowed) {
            if !allowed.contains(&value) {
                return Err(format!(
                    "{name} = {value} is not supported by family '{}' (allowed: {allowed:?})",
                    self.family
                ));
            }
        }
        Ok(())
    }
}

/// Every combination of the space's values for `family`, in a fixed order.
pub fn candidates<'s>(
    family: &'static str,
    space: &'s ConfigSpace,
) -> impl Iterator<Item = KernelConfig> + 's {
    space.tile_m.iter().flat_map(move |&tile_m| {
        space.tile_n.iter().flat_map(move |&tile_n| {
            space.tile_k.iter().flat_map(move |&tile_k| {
                space.warps.iter().flat_map(move |&warps| {
                    space.stages.iter().flat_map(move |&stages| {
                        space.split_k.iter().map(move |&split_k| KernelConfig {
                            family,
                            tile_m,
                            tile_n,
                            tile_k,
                            warps,
                            stages,
                            split_k,
                        })
                    })
                })
            })
        })
    })
}

impl ConfigSpace {
    /// Number of combinations.
    pub fn size(&self) -> usize {
        self.tile_m.len()
            * self.tile_n.len()
            * self.tile_k.len()
            * self.warps.len()
            * self.stages.len()
            * self.split_k.len()
    }
}
