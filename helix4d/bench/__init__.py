"""Benchmarks, all in one place: speed, memory and quality measurements that are run, not asserted.

    helix4d bench attention | pipeline | ovoxel | all   # report (attention, pipeline, report, ovoxel)
    helix4d bench gpu                                   # TRELLIS.2's architecture, random weights (gpu, gpu_*)
    python -m helix4d.bench.cost                        # predicted FLOPs, bytes, seconds (cost, cost_formulas)
    python -m helix4d.bench.matting                     # mattes on cluttered backgrounds, static and hand-held
    python -m helix4d.bench.render                      # rasteriser ms per frame
    python -m helix4d.bench.export                      # baking, simplification and file writers
    python -m helix4d.bench.tracking                    # tracked vertices' drift from true trajectories
    python -m helix4d.bench.trellis2_flow               # one TRELLIS.2-size flow step per attention backend
    python -m helix4d.bench.ovoxel                      # mesh <-> O-Voxel against dense voxels + marching cubes

Nothing here is imported by the library: each module is a command's body or a part of one; `common` holds what
several share, and `workload` the TRELLIS.2 work that both the cost model and `helix4d bench gpu` count.
"""
