//! BONES (Wang et al., SIGMETRICS 2024) as a reference: Lyapunov drift-plus-penalty over
//! (rung, enhancement level) with a deadline mask, from BONES' `control/bones.py`. Not ported:
//! its autotune tables (binary `.npz` files); gamma_p is fixed at its default 10. Quick start
//! (no enhancement until the model is fetched) is the simulator's job; `max_level` holds its
//! level restriction.

use super::{Decision, Observation, Policy, QualityTable};

pub struct Bones {
    /// Levels above this are never chosen (BONES' quick start keeps low and medium only).
    pub max_level: usize,
    pub gamma_p: f64,
    pub v_multiplier: f64,
    pub table: QualityTable,
}

impl Bones {
    /// `drop_top_level`: BONES leaves IMDN's slowest level out of its choices.
    pub fn new(mut table: QualityTable, drop_top_level: bool) -> Self {
        if drop_top_level {
            for row in &mut table.quality {
                if let Some(last) = row.last_mut() {
                    *last = None;
                }
            }
        }
        let max_level = table.levels().saturating_sub(1);
        Self { max_level, gamma_p: 10.0, v_multiplier: 1.0, table }
    }
}

impl Policy for Bones {
    fn name(&self) -> &'static str {
        "bones"
    }

    fn decide(&mut self, obs: &Observation<'_>) -> Decision {
        let seg = obs.ladder.chunk_s();
        let cap = obs.buffer_cap.as_secs_f64();
        let top_q = self.table.base(self.table.rungs().saturating_sub(1));
        let v = (cap - seg) * seg / (top_q + self.gamma_p) * self.v_multiplier;
        let bd = obs.buffer.as_secs_f64();
        let be = obs.enhance_backlog.as_secs_f64();
        let mut best = (Decision::default(), f64::INFINITY);
        for r in 0..self.table.rungs().min(obs.ladder.rungs()) {
            let size = obs.next_sizes_bits.get(r).copied().unwrap_or(f64::INFINITY);
            let levels = if obs.enhance_available { self.table.levels().min(self.max_level + 1) } else { 1 };
            for l in 0..levels {
                let c = self.table.cost(r, l);
                let Some(q) = self.table.get(r, l) else { continue };
                if be + c - bd > 0.0 {
                    continue;
                }
                let obj = (bd * seg + be * c - v * (q + self.gamma_p)) / size;
                if obj < best.1 {
                    best = (Decision { rung: r, level: l }, obj);
                }
            }
        }
        best.0
    }
}
