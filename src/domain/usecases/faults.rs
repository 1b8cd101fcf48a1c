//! Faults: clear the ones a filter selects (device, code, time range).

use super::{audit_with, Actor, Ctx, Op, Target};
use crate::error::Result;
pub use crate::store::faults::FaultFilter;

/// Delete the faults `filter` selects; returns how many. One audit entry names the filter
/// and the count.
pub async fn clear(ctx: &Ctx<'_>, actor: &Actor, filter: &FaultFilter) -> Result<usize> {
    actor.require(Op::FaultClear)?;
    let (now, who, filter) = (ctx.now(), actor.name.clone(), filter.clone());
    ctx.store
        .run(move |s| {
            let n = s.delete_faults(&filter)?;
            let detail = format!("{}: {n} cleared", filter.describe());
            audit_with(s, now, &who, Op::FaultClear, &Target::Faults, Some(&detail))?;
            Ok(n)
        })
        .await
}
