//! Helpers shared by the burn layer tests: tensor values on the host and every parameter's gradient by
//! module path.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Gradients, Tensor};
use std::collections::BTreeMap;

/// The values of `t` as f32, row-major.
pub fn vals<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

struct NamedGrads<'a>(&'a Gradients, Vec<String>, BTreeMap<String, Vec<f32>>);

impl ModuleVisitor for NamedGrads<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.1.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.1.pop();
    }
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let n = p.val().shape().num_elements();
        let g = p.val().grad(self.0).map_or(vec![0.0; n], vals);
        self.2.insert(self.1.join("."), g);
    }
}

/// Every float parameter's gradient in `grads` by module path (`association_core.in_proj_weight`, …);
/// zeros where a parameter got none.
pub fn named_grads<M: Module>(module: &M, grads: &Gradients) -> BTreeMap<String, Vec<f32>> {
    let mut v = NamedGrads(grads, Vec::new(), BTreeMap::new());
    module.visit(&mut v);
    v.2
}
