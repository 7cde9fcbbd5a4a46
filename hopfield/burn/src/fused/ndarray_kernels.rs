//! [`AssociationKernels`] on burn's NdArray backend: `hopfield`'s blocked CPU association (`Cpu<f32>` or
//! `Cpu<f64>`, as the tensors are), over copies of the `O(L·d)` inputs. burn 0.22 deprecates NdArray in
//! favour of Flex; NdArray is still the CPU backend most burn code runs on, so it is the one served here.
#![allow(deprecated)]

use super::{AssociationKernels, Saved};
use burn::backend::ndarray::NdArrayTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::NdArray;
use burn::tensor::TensorData;
use hopfield::backend::{Backend as _, Cpu, ScoreBias};
use hopfield::Element;

/// An element type both backends share.
trait Elem: Element + burn::tensor::Element {
    fn host(t: &NdArrayTensor) -> Option<(Vec<Self>, Vec<usize>)>;
}

impl Elem for f32 {
    fn host(t: &NdArrayTensor) -> Option<(Vec<f32>, Vec<usize>)> {
        match t {
            NdArrayTensor::F32(s) => Some((s.view().iter().copied().collect(), s.shape().to_vec())),
            _ => None,
        }
    }
}

impl Elem for f64 {
    fn host(t: &NdArrayTensor) -> Option<(Vec<f64>, Vec<usize>)> {
        match t {
            NdArrayTensor::F64(s) => Some((s.view().iter().copied().collect(), s.shape().to_vec())),
            _ => None,
        }
    }
}

fn upload<E: Elem>(cpu: &Cpu<E>, t: &NdArrayTensor) -> <Cpu<E> as hopfield::Backend>::Tensor {
    let (data, shape) = E::host(t).expect("fused association: q, k, v and the masks share one float type");
    cpu.from_vec(data, &shape)
}

fn download<E: Elem>(cpu: &Cpu<E>, t: &<Cpu<E> as hopfield::Backend>::Tensor) -> NdArrayTensor {
    NdArrayTensor::from_data(TensorData::new(cpu.to_vec(t), cpu.shape(t)))
}

fn beta<E: Elem>(beta: &[f64]) -> Vec<E> {
    beta.iter().map(|&b| E::of(b)).collect()
}

fn forward<E: Elem>(
    q: &NdArrayTensor,
    k: &NdArrayTensor,
    v: &NdArrayTensor,
    b: &[f64],
    padding: Option<&NdArrayTensor>,
    association: Option<&NdArrayTensor>,
) -> (NdArrayTensor, NdArrayTensor) {
    let cpu = Cpu::<E>::new();
    let (q, k, v) = (upload(&cpu, q), upload(&cpu, k), upload(&cpu, v));
    let padding = padding.map(|p| upload(&cpu, p));
    let association = association.map(|a| upload(&cpu, a));
    let bias = ScoreBias { padding: padding.as_ref(), association: association.as_ref() };
    let (out, lse) = cpu.association(&q, &k, &v, &beta::<E>(b), &bias);
    (download(&cpu, &out), download(&cpu, &lse))
}

fn backward<E: Elem>(s: &Saved<NdArray>, d_out: &NdArrayTensor) -> [NdArrayTensor; 3] {
    let cpu = Cpu::<E>::new();
    let up = |t: &NdArrayTensor| upload(&cpu, t);
    let (q, k, v, out, lse, d_out) = (up(&s.q), up(&s.k), up(&s.v), up(&s.out), up(&s.lse), up(d_out));
    let padding = s.padding.as_ref().map(up);
    let association = s.association.as_ref().map(up);
    let bias = ScoreBias { padding: padding.as_ref(), association: association.as_ref() };
    let (dq, dk, dv) = cpu.association_backward(&q, &k, &v, &beta::<E>(&s.beta), &bias, &out, &lse, &d_out);
    [dq, dk, dv].map(|t| download(&cpu, &t))
}

impl AssociationKernels for NdArray {
    fn association_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        beta: &[f64],
        padding: Option<FloatTensor<Self>>,
        association: Option<FloatTensor<Self>>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let f = if matches!(q, NdArrayTensor::F64(_)) { forward::<f64> } else { forward::<f32> };
        f(&q, &k, &v, beta, padding.as_ref(), association.as_ref())
    }

    fn association_backward(saved: Saved<Self>, d_out: FloatTensor<Self>) -> [FloatTensor<Self>; 3] {
        let f = if matches!(saved.q, NdArrayTensor::F64(_)) { backward::<f64> } else { backward::<f32> };
        f(&saved, &d_out)
    }
}

impl super::FusedAssociation for NdArray {
    fn fused_association(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        beta: Vec<f64>,
        padding: FloatTensor<Self>,
        association: FloatTensor<Self>,
        given: (bool, bool),
    ) -> FloatTensor<Self> {
        let (padding, association) = super::given(padding, association, given);
        Self::association_forward(q, k, v, &beta, padding, association).0
    }
}
