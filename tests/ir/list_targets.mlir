// --list-targets names every known GPU target.
// RUN: sparseflow opt --list-targets
// CHECK: sm_80 Ampere A100 (108 SMs)
// CHECK-NEXT: sm_86
// CHECK-NEXT: sm_89
// CHECK-NEXT: sm_90a Hopper H100 SXM (132 SMs)
