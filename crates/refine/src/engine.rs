//! Which engine answers a question. A question is a network, a region and a flipped bit; the
//! method names the engine: an abstract analysis, the differential zonotope refined by LPs,
//! or the precise single-image evaluation (`auto`: precise at a single image, diff-zonotope
//! elsewhere). [`Engine::new`] builds it and [`CertifyPixel`] certifies its pixels. `certify`,
//! `bench` and `curve` all come through here, so a method name means one engine everywhere.
//!
//! This lives in the LP crate because it is the top of the library: it knows every engine.

use crate::window::Window;
use crate::{LpRefiner, LpSettings};
use std::fmt;
use zonocert_network::Network;
use zonocert_transform::float32::Semantics;
use zonocert_transform::precise::{Arithmetic, PreciseCertifier};
use zonocert_transform::sensitivity::{Certified, Certifier, CertifyPixel, Method, Region, Screen, Settings};

/// How a pixel's bound is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineMethod {
    /// `precise` at a single image, `diff-zonotope` for a ball or the global region.
    Auto,
    /// An abstract analysis of the region and of each pixel's flip.
    Abstract(Method),
    /// `diff-zonotope` whose bounds on logit-difference changes are tightened by LPs over a
    /// window of late layers (each proven by a safe dual bound).
    DiffZonotopeLp,
    /// Single image only: the image and each flipped twin in high-precision ball arithmetic,
    /// enclosing the exact value (a certified lower bound comes with the upper one).
    Precise,
}

impl EngineMethod {
    /// Every method, in the order help texts list them.
    pub const ALL: [EngineMethod; 7] = [
        EngineMethod::Auto,
        EngineMethod::Abstract(Method::Interval),
        EngineMethod::Abstract(Method::TwinZonotope),
        EngineMethod::Abstract(Method::DiffZonotope),
        EngineMethod::DiffZonotopeLp,
        EngineMethod::Abstract(Method::DiffInterval),
        EngineMethod::Precise,
    ];

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            EngineMethod::Auto => "auto",
            EngineMethod::Abstract(m) => m.name(),
            EngineMethod::DiffZonotopeLp => "diff-zonotope+lp",
            EngineMethod::Precise => "precise",
        }
    }

    /// The method called `name`, if there is one.
    pub fn parse(name: &str) -> Option<EngineMethod> {
        EngineMethod::ALL.into_iter().find(|m| m.name() == name)
    }

    /// `auto` made concrete for `region` and `semantics` (`precise` at a single image, unless
    /// the question is about float32 execution, which it does not model); every other method
    /// is itself.
    pub fn resolve(self, region: &Region, semantics: Semantics) -> EngineMethod {
        match (self, region, semantics) {
            (EngineMethod::Auto, Region::Point(_), Semantics::Real) => EngineMethod::Precise,
            (EngineMethod::Auto, _, _) => EngineMethod::Abstract(Method::DiffZonotope),
            (m, _, _) => m,
        }
    }
}

/// What an engine needs besides the network, the region and the method. The defaults are the
/// ones `bench` and `curve` use and `certify` starts from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineSettings {
    /// The flipped bit (0 = least significant).
    pub bit: u8,
    /// Abstract engines: generator budget of the region analysis.
    pub region_budget: usize,
    /// Abstract engines: generator budget of each pixel's difference analysis.
    pub diff_budget: usize,
    /// `diff-zonotope`: the screening pass (`None`: always the full pass).
    pub screen: Option<Screen>,
    /// `precise`: the arithmetic of the balls.
    pub arithmetic: Arithmetic,
    /// `diff-zonotope+lp`: the LP work.
    pub lp: LpSettings,
    /// Real-valued or `float32` execution (abstract methods only).
    pub semantics: Semantics,
    /// Abstract engines: carry the difference's boxed error terms (see [`Settings`]).
    pub carry_errors: bool,
    /// Abstract engines: the region's forward analysis uses reverse passes (see [`Settings`]).
    pub region_backsub: bool,
    /// Abstract engines: each difference analysis bounds its carried term again by reverse
    /// passes (see [`Settings`]).
    pub diff_backsub: bool,
}

impl Default for EngineSettings {
    fn default() -> Self {
        let s = Settings::default();
        EngineSettings {
            bit: s.bit,
            region_budget: s.region_budget,
            diff_budget: s.diff_budget,
            screen: s.screen,
            arithmetic: Arithmetic::Fixed,
            lp: LpSettings::default(),
            semantics: s.semantics,
            carry_errors: s.carry_errors,
            region_backsub: s.region_backsub,
            diff_backsub: s.diff_backsub,
        }
    }
}

/// Why no engine answers a question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineError {
    /// `precise` was asked for a ball or the global region.
    PreciseNeedsPoint,
    /// The method does not model `float32` execution yet, or the network is outside the model.
    F32Unsupported(String),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::PreciseNeedsPoint => write!(
                f,
                "method precise certifies a single image (eps 0); balls and the global region need an abstract method ({})",
                EngineMethod::ALL
                    .iter()
                    .filter(|m| matches!(m, EngineMethod::Abstract(_) | EngineMethod::DiffZonotopeLp))
                    .map(|m| m.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            EngineError::F32Unsupported(why) => write!(f, "--semantics f32: {why}"),
        }
    }
}

impl std::error::Error for EngineError {}

/// The engine that answers one question.
pub enum Engine<'a> {
    /// An abstract analysis.
    Abstract(Certifier<'a>),
    /// The differential zonotope with LP refinement.
    Refined(Certifier<'a>, LpRefiner<'a>),
    /// The precise single-image evaluation.
    Precise(PreciseCertifier<'a>),
}

impl<'a> Engine<'a> {
    /// Runs what the question needs once (the region analysis, LP neuron tightening, or the
    /// unflipped image's evaluation), ready for [`CertifyPixel::certify`].
    pub fn new(net: &'a Network, region: &Region, method: EngineMethod, s: &EngineSettings) -> Result<Engine<'a>, EngineError> {
        let settings = |method: Method| Settings {
            method,
            region_budget: s.region_budget,
            diff_budget: s.diff_budget,
            bit: s.bit,
            screen: s.screen,
            semantics: s.semantics,
            carry_errors: s.carry_errors,
            region_backsub: s.region_backsub,
            diff_backsub: s.diff_backsub,
        };
        let method = method.resolve(region, s.semantics);
        if let Semantics::F32(m) = s.semantics {
            if method == EngineMethod::Precise {
                return Err(EngineError::F32Unsupported(format!(
                    "method {} does not model float32 execution yet; use an abstract method (interval, twin-zonotope, diff-zonotope, diff-zonotope+lp, diff-interval)",
                    method.name()
                )));
            }
            m.check(net).map_err(EngineError::F32Unsupported)?;
        }
        Ok(match (method, region) {
            (EngineMethod::Precise, Region::Point(px)) => Engine::Precise(PreciseCertifier::new(net, px, s.bit, s.arithmetic)),
            (EngineMethod::Precise, _) => return Err(EngineError::PreciseNeedsPoint),
            (EngineMethod::DiffZonotopeLp, _) => {
                let window = Window::new(net, s.lp.window);
                let mut cert = Certifier::with_kept(net, region.clone(), settings(Method::DiffZonotope), &window.inputs);
                let kept = cert.take_kept();
                let refiner =
                    LpRefiner::new(net, window, &cert.region_analysis().bounds, kept, LpSettings { semantics: s.semantics, ..s.lp });
                Engine::Refined(cert, refiner)
            }
            (EngineMethod::Abstract(m), _) => Engine::Abstract(Certifier::new(net, region.clone(), settings(m))),
            (EngineMethod::Auto, _) => unreachable!("resolve() makes auto concrete"),
        })
    }

    /// Certifies flips of `bit` from now on, keeping what [`Engine::new`] ran once (none of
    /// it depends on the bit).
    pub fn set_bit(&mut self, bit: u8) {
        match self {
            Engine::Abstract(c) | Engine::Refined(c, _) => c.set_bit(bit),
            Engine::Precise(p) => p.set_bit(bit),
        }
    }

    /// The method this engine runs (never `auto`).
    pub fn method(&self) -> EngineMethod {
        match self {
            Engine::Abstract(c) => EngineMethod::Abstract(c.settings().method),
            Engine::Refined(..) => EngineMethod::DiffZonotopeLp,
            Engine::Precise(_) => EngineMethod::Precise,
        }
    }

    /// The abstract certifier (its settings and region analysis), if the engine has one.
    pub fn certifier(&self) -> Option<&Certifier<'a>> {
        match self {
            Engine::Abstract(c) | Engine::Refined(c, _) => Some(c),
            Engine::Precise(_) => None,
        }
    }

    /// The LP refiner (its window and statistics), if the engine has one.
    pub fn refiner(&self) -> Option<&LpRefiner<'a>> {
        match self {
            Engine::Refined(_, r) => Some(r),
            _ => None,
        }
    }

    /// The precise certifier (its arithmetic and fallbacks), if the engine is one.
    pub fn precise(&self) -> Option<&PreciseCertifier<'a>> {
        match self {
            Engine::Precise(p) => Some(p),
            _ => None,
        }
    }
}

impl CertifyPixel for Engine<'_> {
    fn certify(&self, i: usize) -> Certified {
        match self {
            Engine::Abstract(c) => c.certify(i),
            Engine::Refined(c, r) => c.pixel_refined(i, Some(r)).into(),
            Engine::Precise(p) => p.certify(i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_auto_resolves_by_region() {
        for m in EngineMethod::ALL {
            assert_eq!(EngineMethod::parse(m.name()), Some(m));
        }
        assert_eq!(EngineMethod::parse("diff"), None);
        let point = Region::Point(vec![0; 784]);
        assert_eq!(EngineMethod::Auto.resolve(&point, Semantics::Real), EngineMethod::Precise);
        assert_eq!(EngineMethod::Auto.resolve(&Region::Global, Semantics::Real), EngineMethod::Abstract(Method::DiffZonotope));
        assert_eq!(EngineMethod::Precise.resolve(&Region::Global, Semantics::Real), EngineMethod::Precise);
        // float32 questions at a single image go to the differential zonotope.
        let f32 = Semantics::F32(Default::default());
        assert_eq!(EngineMethod::Auto.resolve(&point, f32), EngineMethod::Abstract(Method::DiffZonotope));
    }
}
