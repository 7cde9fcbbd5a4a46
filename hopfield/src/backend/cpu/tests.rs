//! Unit tests of the CPU backend's ops that no other module covers.

use super::*;

#[test]
fn gather_rows_and_scatter_add_rows_are_adjoint() {
    let cpu = Cpu::<f64>::new();
    // Values k/4 keep every sum exact; id 2 repeats so the scatter must accumulate, id 1 is never read.
    let table = cpu.from_vec((0..12).map(|k| k as f64 / 4.0).collect(), &[4, 3]);
    let ids = [2, 0, 2, 3];
    let g = cpu.gather_rows(&table, &ids);
    assert_eq!(g.shape(), [4, 3]);
    assert_eq!(cpu.to_vec(&g), vec![1.5, 1.75, 2.0, 0.0, 0.25, 0.5, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75]);
    let src = cpu.from_vec((0..12).map(|k| 1.0 + k as f64).collect(), &[4, 3]);
    let mut dst = cpu.full(&[4, 3], 0.5);
    cpu.scatter_add_rows(&mut dst, &ids, &src);
    assert_eq!(cpu.to_vec(&dst), vec![4.5, 5.5, 6.5, 0.5, 0.5, 0.5, 8.5, 10.5, 12.5, 10.5, 11.5, 12.5]);
    // <gather(T), S> = <T, scatter(S)>: the scatter is the gather's backward.
    let mut scattered = cpu.zeros(&[4, 3]);
    cpu.scatter_add_rows(&mut scattered, &ids, &src);
    let lhs: f64 = g.iter().zip(src.iter()).map(|(a, b)| a * b).sum();
    let rhs: f64 = table.iter().zip(scattered.iter()).map(|(a, b)| a * b).sum();
    assert_eq!(lhs, rhs);
    // A shared destination is copied on write, not written through.
    let mut shared = cpu.zeros(&[4, 3]);
    let alias = shared.clone();
    cpu.scatter_add_rows(&mut shared, &ids, &src);
    assert!(alias.iter().all(|&v| v == 0.0));
    // A non-standard-layout table gathers by logical rows.
    let t = cpu.from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]).reversed_axes();
    assert_eq!(cpu.to_vec(&cpu.gather_rows(&t, &[1])), vec![2.0, 4.0]);
}
