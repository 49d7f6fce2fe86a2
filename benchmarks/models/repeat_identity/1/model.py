"""Decoupled identity: N responses per request, each a copy of INPUT0 (one batch item
per request); FINAL is sent with the last response, or alone when N is 0."""

import triton_python_backend_utils as pb_utils

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            count = int(
                pb_utils.get_input_tensor_by_name(request, "N").as_numpy().flat[0]
            )
            sender = request.get_response_sender()
            if count <= 0:
                sender.send(flags=FINAL)
                continue
            response = pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor("OUTPUT0", data)]
            )
            for i in range(count):
                sender.send(response, flags=FINAL if i == count - 1 else 0)
        return None
