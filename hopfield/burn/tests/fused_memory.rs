//! Memory of the fused association under burn's autodiff at a long sequence, counted by a global
//! allocator (its own test binary, so that nothing else allocates meanwhile): forward and backward at
//! L = S = 8192 on NdArray stay far below the one `[L, S]` f32 matrix (256 MiB) that the materialised
//! path would hold for the backward, i.e. memory is `O(L·d)`.

use burn::tensor::{Device, Distribution, Tensor};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[test]
#[allow(deprecated)]
fn fused_association_memory_is_linear_in_length() {
    let device = Device::ndarray().autodiff();
    let (l, d) = (8192, 16);
    let rnd = || Tensor::<4>::random([1, 1, l, d], Distribution::Normal(0.0, 1.0), &device).require_grad();
    let (q, k, v) = (rnd(), rnd(), rnd());
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);

    let out = hopfield_burn::fused::association(q.clone(), k.clone(), v.clone(), &[0.25], None, None);
    let grads = out.sum().backward();
    let dq = q.grad(&grads).unwrap();
    let finite = dq.into_data().try_to_vec::<f32>().unwrap().iter().all(|x| x.is_finite());

    let extra = PEAK.load(Ordering::Relaxed) - base;
    let matrix = l * l * 4;
    println!("fused association L = S = {l}, d = {d}: forward + backward peak +{:.1} MiB", extra as f64 / 1048576.0);
    assert!(finite, "the gradient is finite");
    assert!(extra < matrix / 16, "peak +{extra} B against the {matrix} B association matrix");
}
