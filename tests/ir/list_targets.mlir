// --list-targets names every known GPU target.
// RUN: sparseflow opt --list-targets
// CHECK: sm_80 Ampere A100 (108 SMs)
// CHECK-NEXT: sm_86
// CHECK-NEXT: sm_89
// CHECK-NEXT: sm_90a Hopper H100 SXM (132 SMs)
// CHECK-NEXT: h200 Hopper H200 SXM (132 SMs, 4.4 TB/s measured)
