//! A linear program kept in our own exact form, solved through good_lp (Clarabel, pure Rust, by
//! default; HiGHS with the `highs` feature), and turned into a rigorous bound by the safe dual
//! bound of Neumaier and Shcherbina.
//!
//! The solver's optimum is never trusted: any row multipliers `y` prove, for every feasible
//! `x` (in particular every true network state), `cᵀx = (c − Aᵀy)ᵀx + Σᵢ yᵢ aᵢᵀx ≥
//! min_{x∈box} (c − Aᵀy)ᵀx + Σᵢ (yᵢ ≥ 0 ? yᵢ loᵢ : yᵢ hiᵢ)`. That right-hand side is evaluated
//! in outward-rounded interval arithmetic, so the result is a proof whatever the solver did;
//! the solver only makes it tight. A failed solve gives no bound, never a smaller one.
//!
//! Paper: Neumaier, Shcherbina, "Safe bounds in linear and mixed-integer linear programming",
//! Math. Programming 99 (2004).

use good_lp::constraint::ConstraintReference;
use good_lp::solvers::{DualValues, SolutionWithDual};
use good_lp::{constraint, variable, Expression, ProblemVariables, Solution, SolverModel, Variable};
use zonocert_domain::Interval;

/// The solver this build uses, as reports name it.
#[cfg(feature = "highs")]
pub const SOLVER: &str = "HiGHS via good_lp (dual simplex; interior point above 30k nonzeros)";
/// The solver this build uses, as reports name it.
#[cfg(not(feature = "highs"))]
pub const SOLVER: &str = "Clarabel via good_lp (interior point, pure Rust)";

/// Nonzeros above which interior point beats dual simplex here.
#[cfg(feature = "highs")]
const LARGE_PROGRAM: usize = 30_000;

/// A solver model set up for one minimisation with a time limit.
#[cfg(feature = "highs")]
fn solver_model(problem: good_lp::variable::UnsolvedProblem, nonzeros: usize, time_limit: f64) -> good_lp::solvers::highs::HighsProblem {
    let mut model = good_lp::highs(problem).set_time_limit(time_limit.max(1e-3)).set_threads(1);
    model.set_verbose(false);
    // Measured on this project's windows: dual simplex is 5–20× faster than interior point
    // on small programs (a few thousand nonzeros), interior point 7× faster than simplex on
    // large ones (tiny_effnet_tv's head, 144k nonzeros: 3 s against 20 s per LP).
    let solver = if nonzeros > LARGE_PROGRAM { "ipm" } else { "simplex" };
    model.set_option("solver", solver)
}

/// A solver model set up for one minimisation with a time limit.
#[cfg(not(feature = "highs"))]
fn solver_model(
    problem: good_lp::variable::UnsolvedProblem,
    _nonzeros: usize,
    time_limit: f64,
) -> good_lp::solvers::clarabel::ClarabelProblem {
    let mut model = good_lp::clarabel(problem);
    model.settings().time_limit(time_limit.max(1e-3)).verbose(false);
    model
}

/// Whether a failed solve stopped at the time limit.
fn is_time_limit(error: &good_lp::ResolutionError) -> bool {
    matches!(error, good_lp::ResolutionError::Other(m) if m.contains("Time limit"))
}

/// One ranged row `lo ≤ Σ coef·x_var ≤ hi` (`lo` may be −∞, `hi` may be +∞).
#[derive(Debug, Clone)]
pub struct Row {
    /// Sparse terms `(variable, coefficient)`.
    pub terms: Vec<(usize, f64)>,
    /// Lower end.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
}

/// A linear feasibility region: boxed variables and ranged rows with exact `f64` data. Every
/// true state the LP stands for must satisfy every row exactly (in real arithmetic).
#[derive(Debug, Clone, Default)]
pub struct Lp {
    /// Variable boxes.
    pub boxes: Vec<Interval>,
    /// Ranged rows.
    pub rows: Vec<Row>,
}

/// What one LP solve produced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// A rigorous lower bound on `min objective` over the region (the box bound when the
    /// solver failed).
    pub bound: f64,
    /// Whether the solver stopped at its time limit.
    pub timed_out: bool,
}

impl Lp {
    /// An empty program.
    pub fn new() -> Self {
        Lp::default()
    }

    /// Adds a variable with box `b` (must be finite) and returns its index.
    pub fn var(&mut self, b: Interval) -> usize {
        self.boxes.push(b);
        self.boxes.len() - 1
    }

    /// Adds one variable per box; returns their indices.
    pub fn vars(&mut self, boxes: &[Interval]) -> Vec<usize> {
        boxes.iter().map(|b| self.var(*b)).collect()
    }

    /// Adds the row `lo ≤ Σ terms ≤ hi`; zero coefficients are dropped.
    pub fn row(&mut self, terms: Vec<(usize, f64)>, lo: f64, hi: f64) {
        let terms: Vec<(usize, f64)> = terms.into_iter().filter(|t| t.1 != 0.0).collect();
        if terms.is_empty() || (lo == f64::NEG_INFINITY && hi == f64::INFINITY) {
            return;
        }
        self.rows.push(Row { terms, lo, hi });
    }

    /// Number of nonzero row coefficients.
    pub fn nonzeros(&self) -> usize {
        self.rows.iter().map(|r| r.terms.len()).sum()
    }

    /// A rigorous lower bound on `min Σ objective` over the box alone.
    pub fn box_bound(&self, objective: &[(usize, f64)]) -> f64 {
        objective.iter().fold(Interval::point(0.0), |acc, &(v, c)| acc.add(&Interval::point(c).mul(&self.boxes[v]))).lo
    }

    /// The safe bound `min_{x∈box} (c − Aᵀy)ᵀx + Σᵢ (yᵢ ≥ 0 ? yᵢ loᵢ : yᵢ hiᵢ)` for row
    /// multipliers `y`, in outward-rounded arithmetic. A multiplier that would meet an
    /// infinite row end is taken as 0 (any `y` is valid, so this is too).
    pub fn safe_bound(&self, objective: &[(usize, f64)], y: &[f64]) -> f64 {
        let mut reduced: Vec<Interval> = vec![Interval::point(0.0); self.boxes.len()];
        for &(v, c) in objective {
            reduced[v] = reduced[v].add(&Interval::point(c));
        }
        let mut constant = Interval::point(0.0);
        for (row, &yi) in self.rows.iter().zip(y) {
            let end = if yi > 0.0 { row.lo } else { row.hi };
            if yi == 0.0 || !yi.is_finite() || !end.is_finite() {
                continue;
            }
            constant = constant.add(&Interval::point(yi).mul(&Interval::point(end)));
            let yi_iv = Interval::point(yi);
            for &(v, a) in &row.terms {
                reduced[v] = reduced[v].sub(&yi_iv.mul(&Interval::point(a)));
            }
        }
        let mut total = constant;
        for (r, b) in reduced.iter().zip(&self.boxes) {
            if r.lo == 0.0 && r.hi == 0.0 {
                continue;
            }
            total = total.add(&r.mul(b));
        }
        if total.lo.is_nan() {
            f64::NEG_INFINITY
        } else {
            total.lo
        }
    }

    /// Minimises `Σ objective` with the LP solver (time limit in seconds) and proves a lower bound
    /// from the solver's row duals (tried with both sign conventions; the better one counts).
    /// The bound is never worse than the box bound.
    pub fn minimise(&self, objective: &[(usize, f64)], time_limit: f64) -> Outcome {
        let floor = self.box_bound(objective);
        let mut problem = ProblemVariables::new();
        let vars: Vec<Variable> = self.boxes.iter().map(|b| problem.add(variable().min(b.lo).max(b.hi))).collect();
        let obj: Expression = objective.iter().map(|&(v, c)| c * vars[v]).sum();
        let mut model = solver_model(problem.minimise(obj), self.nonzeros(), time_limit);
        // Each of our rows becomes one or two solver rows; remember which.
        let mut refs = Vec::with_capacity(self.rows.len());
        for row in &self.rows {
            let e: Expression = row.terms.iter().map(|&(v, c)| c * vars[v]).sum();
            let r = if row.lo == row.hi {
                (Some(model.add_constraint(constraint::eq(e, row.lo))), None)
            } else {
                let lo = row.lo.is_finite().then(|| model.add_constraint(constraint::geq(e.clone(), row.lo)));
                let hi = row.hi.is_finite().then(|| model.add_constraint(constraint::leq(e, row.hi)));
                (lo, hi)
            };
            refs.push(r);
        }
        let mut solved = match model.solve() {
            Ok(s) => s,
            Err(e) => return Outcome { bound: floor, timed_out: is_time_limit(&e) },
        };
        let timed_out = matches!(solved.status(), good_lp::SolutionStatus::TimeLimit);
        let duals = solved.compute_dual();
        let dual_of = |r: &Option<ConstraintReference>| r.as_ref().map_or(0.0, |r| duals.dual(r.clone()));
        let y: Vec<f64> = refs.iter().map(|(a, b)| dual_of(a) + dual_of(b)).collect();
        let neg: Vec<f64> = y.iter().map(|v| -v).collect();
        let bound = self.safe_bound(objective, &y).max(self.safe_bound(objective, &neg)).max(floor);
        Outcome { bound, timed_out }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_bound_of_a_small_lp_is_tight_and_below_the_optimum() {
        // min x + y  s.t.  x + 2y ≥ 2, 3x + y ≥ 3, 0 ≤ x, y ≤ 10: optimum at (0.8, 0.6) = 1.4.
        let mut lp = Lp::new();
        let x = lp.var(Interval::new(0.0, 10.0));
        let y = lp.var(Interval::new(0.0, 10.0));
        lp.row(vec![(x, 1.0), (y, 2.0)], 2.0, f64::INFINITY);
        lp.row(vec![(x, 3.0), (y, 1.0)], 3.0, f64::INFINITY);
        let out = lp.minimise(&[(x, 1.0), (y, 1.0)], 5.0);
        let b = out.bound;
        assert!(b <= 1.4 && b > 1.4 - 1e-9, "bound {b}");
        // Any multipliers are valid; the wrong ones are just loose.
        assert!(lp.safe_bound(&[(x, 1.0), (y, 1.0)], &[0.0, 0.0]) <= 1.4);
        assert!(lp.safe_bound(&[(x, 1.0), (y, 1.0)], &[5.0, -3.0]) <= 1.4);
    }

    #[test]
    fn equality_rows_and_free_signs() {
        // max x (= min −x) s.t. x − y = 0.5, y ∈ [−1, 1], x ∈ [−5, 5]: optimum x = 1.5.
        let mut lp = Lp::new();
        let x = lp.var(Interval::new(-5.0, 5.0));
        let y = lp.var(Interval::new(-1.0, 1.0));
        lp.row(vec![(x, 1.0), (y, -1.0)], 0.5, 0.5);
        let b = lp.minimise(&[(x, -1.0)], 5.0).bound;
        assert!(b <= -1.5 && b > -1.5 - 1e-9, "bound {b}");
    }
}
