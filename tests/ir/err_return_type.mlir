// RUN: sparseflow opt %s
func.func @f(%a: tensor<4xf16>) -> tensor<8xf16> {
  return %a : tensor<4xf16> // expected-error {{returns values whose types do not match the function's result types (tensor<8xf16>)}}
}
