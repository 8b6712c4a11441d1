// --list-passes names every pass with one line each.
// RUN: sparseflow opt --list-passes
// CHECK: fuse-epilogue
// CHECK-NEXT: select-tiles
// CHECK-NEXT: canonicalize dead-code elimination
