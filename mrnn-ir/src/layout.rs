//! Layout phase: turns a checked [`Ir`] into an [`Architecture`] by giving every region its unit
//! offset (recurrent regions in the hidden vector, input regions in the input vector, each in
//! declaration order) and every connection the indices of its source and destination.
//!
//! It also lays out networks the checker rejected (so that `mrnn!` still generates their type
//! next to the errors): nothing here assumes the rules held, and nothing panics.

use std::collections::HashMap;

use crate::ir::{Ir, RegionKind};
use crate::model::{Architecture, Connection, InputRegion, Region, Sign, Source};

/// Lays out a network. Only one that passed [`crate::check::check`] without errors gives an
/// [`Architecture`] the runtime may build; a rejected one gets sizes clamped to `0..` and
/// saturating offsets.
#[must_use]
pub fn layout(ir: &Ir) -> Architecture {
    let mut regions = Vec::new();
    let mut inputs = Vec::new();
    let mut index = HashMap::new();
    let (mut hidden, mut input) = (0usize, 0usize);
    for (id, r) in ir.regions() {
        // Checked: sizes are positive; the sign is declared wherever Dale's law needs it, and
        // defaults to excitatory (as in mRNNTorch) where it does not matter.
        let units = usize::try_from(r.units.value).unwrap_or(0);
        let sign = r.sign.as_ref().map_or(Sign::Exc, |s| s.value);
        match r.kind {
            RegionKind::Recurrent => {
                index.insert(id, Source::Recurrent(regions.len()));
                regions.push(Region {
                    name: r.name.value.clone().into(),
                    units,
                    offset: hidden,
                    sign,
                    base_firing: r.base_firing.value,
                    init: r.init.value,
                    parent: r.parent.as_ref().map(|p| p.value.clone().into()),
                    learnable_bias: r.learnable_bias,
                });
                hidden = hidden.saturating_add(units);
            }
            RegionKind::Input => {
                index.insert(id, Source::Input(inputs.len()));
                inputs.push(InputRegion {
                    name: r.name.value.clone().into(),
                    units,
                    offset: input,
                    sign,
                });
                input = input.saturating_add(units);
            }
        }
    }
    let connections = ir
        .connections()
        .filter_map(|(_, src, dst, p)| {
            let Source::Recurrent(dst) = index[&dst] else { return None };
            Some(Connection {
                src: index[&src],
                dst,
                sparsity: p.sparsity.as_ref().map(|s| s.value),
            })
        })
        .collect();
    Architecture::from_owned_parts(ir.name.value.clone(), ir.settings, regions, inputs, connections)
}
