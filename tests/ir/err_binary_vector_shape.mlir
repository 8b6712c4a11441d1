// A vector that does not match the tensor's last dimension is refused in either order.
// RUN: sparseflow opt %s
func.func @f(%r: tensor<?x32xf16>, %v: tensor<16xf16>) -> tensor<?x32xf16> {
  // expected-error@+1 {{right operand must be tensor<?x32xf16> or a vector tensor<32xf16> broadcast over rows, got tensor<16xf16>}}
  %0 = arith.addf %r, %v : (tensor<?x32xf16>, tensor<16xf16>) -> tensor<?x32xf16>
  // expected-error@+1 {{left operand must be tensor<?x32xf16> or a vector tensor<32xf16> broadcast over rows, got tensor<16xf16>}}
  %1 = arith.addf %v, %0 : (tensor<16xf16>, tensor<?x32xf16>) -> tensor<?x32xf16>
  return %1 : tensor<?x32xf16>
}
