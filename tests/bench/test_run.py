from __future__ import annotations

from bench.run import batch_counters, batch_summary

METRICS = """# HELP nv_inference_count_total Images inferred (batch items)
nv_inference_count_total{model="nin-cifar10",version="1"} %(images)s
nv_inference_exec_count_total{model="nin-cifar10",version="1"} %(execs)s
nv_inference_compute_duration_seconds_sum{model="nin-cifar10",version="1"} %(compute)s
nv_inference_batch_size_bucket{le="1.0",model="nin-cifar10",version="1"} %(b1)s
nv_inference_batch_size_bucket{le="8.0",model="nin-cifar10",version="1"} %(b8)s
nv_inference_batch_size_bucket{le="32.0",model="nin-cifar10",version="1"} %(execs)s
nv_inference_batch_size_bucket{le="+Inf",model="nin-cifar10",version="1"} %(execs)s
"""


def test_batches_between_two_readings_of_the_metrics() -> None:
    before = batch_counters(METRICS % {"images": 10.0, "execs": 10.0, "b1": 10.0, "b8": 10.0, "compute": 1.0})
    assert before["images"] == 10 and before["execs"] == 10 and before["buckets"][8.0] == 10
    # 90 more images in 10 more runs, two of them over 8 images: the largest is at most 32.
    after = batch_counters(METRICS % {"images": 100.0, "execs": 20.0, "b1": 12.0, "b8": 18.0, "compute": 4.0})
    assert batch_summary(before, after) == {"calls": 10, "mean": 9.0, "max": 32.0}
    # Over a 5 s point, those runs took 3 s of ORT: busy 60 % of the time.
    assert batch_summary(before, after, 5.0) == {"calls": 10, "mean": 9.0, "max": 32.0, "ort_busy": 0.6}
    # Nothing ran in between: no summary.
    assert batch_summary(after, after) is None
    # Every run of one image: the largest batch is 1.
    ones = batch_counters(METRICS % {"images": 15.0, "execs": 15.0, "b1": 15.0, "b8": 15.0, "compute": 1.5})
    assert batch_summary(before, ones) == {"calls": 5, "mean": 1.0, "max": 1.0}
