//! The MPI engine: [`Collective`] on the `mpi` crate (rsmpi) over `MPI_COMM_WORLD`, for processes
//! started by `mpiexec -n R` (OpenMPI or MPICH; `srun` under Slurm).
//!
//! MPI's default error handler aborts the job on a communication error, so these operations return
//! errors only in name. A rank that fails otherwise calls [`Mpi::abort`], which makes `mpiexec` stop
//! every rank; a rank that dies is noticed by `mpiexec`, which stops the others.

use super::Collective;
use hopfield::Result;
use mpi::collective::SystemOperation;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

/// `MPI_COMM_WORLD`, initialised by [`Mpi::init`] and finalised when dropped.
pub struct Mpi {
    world: SimpleCommunicator,
    // Dropped last: finalises MPI.
    _universe: mpi::environment::Universe,
}

impl std::fmt::Debug for Mpi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mpi(rank {} of {})", self.rank(), self.size())
    }
}

impl Mpi {
    /// Initialise MPI for this process (a process not started by `mpiexec` is rank 0 of 1). `None` if
    /// MPI was initialised before.
    pub fn init() -> Option<Self> {
        let universe = mpi::initialize()?;
        Some(Mpi { world: universe.world(), _universe: universe })
    }

    /// Stop every rank of the job with exit status `code` (`MPI_Abort`).
    pub fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    fn size(&self) -> usize {
        self.world.size() as usize
    }
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()> {
        let local = buf.to_vec();
        self.world.all_reduce_into(&local[..], buf, SystemOperation::sum());
        Ok(())
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()> {
        let local = buf.to_vec();
        self.world.all_reduce_into(&local[..], buf, SystemOperation::sum());
        Ok(())
    }
    fn all_gather_f32(&self, local: &[f32]) -> Result<Vec<f32>> {
        let mut all = vec![0f32; local.len() * self.size()];
        self.world.all_gather_into(local, &mut all[..]);
        Ok(all)
    }
    fn all_gather_f64(&self, local: &[f64]) -> Result<Vec<f64>> {
        let mut all = vec![0f64; local.len() * self.size()];
        self.world.all_gather_into(local, &mut all[..]);
        Ok(all)
    }
    fn broadcast_bytes(&self, root: usize, buf: &mut Vec<u8>) -> Result<()> {
        let root = self.world.process_at_rank(root as i32);
        let mut len = buf.len() as u64;
        root.broadcast_into(&mut len);
        buf.resize(len as usize, 0);
        root.broadcast_into(&mut buf[..]);
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        self.world.barrier();
        Ok(())
    }
}
