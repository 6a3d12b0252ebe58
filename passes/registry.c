/* The pass registry: parameter schemas (Olive's names, defaults and search values), the
 * vtable array expanded from passes.def, the parameter resolver (literal / DEFAULT_VALUE /
 * SEARCHABLE_VALUES / list of candidates) and the GET /v1/passes rendering. */
#include "passes/passes.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---- parameter groups ---- */

#define P_EXTERNAL_DATA \
	{"save_as_external_data", QD_PT_BOOL, "false", NULL, NULL, \
	 "save tensors in an external data file (forced on when the model exceeds 2 GiB)"}, \
	{"all_tensors_to_one_file", QD_PT_BOOL, "true", NULL, NULL, \
	 "all external tensors in one file (quantd supports only true)"}, \
	{"external_data_name", QD_PT_STRING, "null", NULL, NULL, \
	 "external data file name; null means '<model file>.data'"}, \
	{"size_threshold", QD_PT_INT, "1024", NULL, NULL, \
	 "tensors of at least this many bytes go to the external file (0 = all but int64 shape data under 1024 bytes, which ONNX Runtime needs inline)"}, \
	{"convert_attribute", QD_PT_BOOL, "false", NULL, NULL, \
	 "also move attribute tensors to external data (quantd supports only false)"}

#define P_ORT_COMMON \
	{"precision", QD_PT_ENUM, "\"int8\"", "[\"int8\", \"uint8\"]", "int4|int8|int16|uint4|uint8|uint16", \
	 "weight data type (ORT weight_type)"}, \
	{"weight_type", QD_PT_ENUM, "null", NULL, "QInt8|QUInt8|QInt4|QUInt4|QInt16|QUInt16", \
	 "legacy Olive (<= 0.7) name for precision; when set it overrides precision"}, \
	{"op_types_to_quantize", QD_PT_STRLIST, "null", NULL, NULL, \
	 "quantize only these op types; null means every type the pass can quantize"}, \
	{"op_types_to_exclude", QD_PT_STRLIST, "null", NULL, NULL, \
	 "op types never quantized (every node of these types joins nodes_to_exclude); " \
	 "op_types_to_quantize wins when both are set"}, \
	{"nodes_to_quantize", QD_PT_STRLIST, "null", NULL, NULL, "node-name allow list"}, \
	{"nodes_to_exclude", QD_PT_STRLIST, "null", NULL, NULL, "node-name deny list"}, \
	{"per_channel", QD_PT_BOOL, "false", "[true, false]", NULL, "per-channel weight quantization"}, \
	{"reduce_range", QD_PT_BOOL, "false", "[true, false]", NULL, "quantize weights with 7 bits"}, \
	{"quant_preprocess", QD_PT_BOOL, "true", "[true, false]", NULL, \
	 "pre-process the model first, in quantd's own C: Constant nodes to initializers and a " \
	 "topological sort; static passes also fold constants and BatchNormalization into Conv/Gemm " \
	 "and infer every activation's type and shape (ORT's Python preprocessing is not run)"}, \
	{"activation_symmetric", QD_PT_BOOL, "false", NULL, NULL, \
	 "symmetric activation ranges (extra option ActivationSymmetric)"}, \
	{"weight_symmetric", QD_PT_BOOL, "null", NULL, NULL, \
	 "symmetric weights (extra option WeightSymmetric); null: symmetric for signed types"}, \
	{"extra_options", QD_PT_DICT, "null", NULL, NULL, \
	 "ORT extra_options; unknown keys are rejected"}

#define P_ORT_STATIC_ONLY \
	{"data_config", QD_PT_ANY, "null", NULL, NULL, \
	 "calibration data: a data_configs name or an inline data config (required when static)"}, \
	{"calibrate_method", QD_PT_ENUM, "\"MinMax\"", "[\"MinMax\", \"Entropy\", \"Percentile\"]", \
	 "MinMax|Entropy|Percentile|Distribution", "calibration method"}, \
	{"calibration_providers", QD_PT_STRLIST, "null", NULL, NULL, \
	 "execution providers for calibration; null means CPU"}, \
	{"activation_type", QD_PT_ENUM, "\"int8\"", NULL, \
	 "int8|uint8|int16|uint16|QInt8|QUInt8|QInt16|QUInt16", \
	 "activation data type (Olive's QInt8/QUInt8/QInt16/QUInt16 spellings accepted; 16-bit " \
	 "needs QDQ; searched conditionally on quant_format and precision)"}, \
	{"calibration_sampling_size", QD_PT_ANY, "null", NULL, NULL, \
	 "use at most this many calibration samples (an integer, or a list of one as INC " \
	 "writes it); null: every sample of the dataset"}, \
	{"min_real_range", QD_PT_FLOAT, "null", NULL, NULL, \
	 "minimum rmax - rmin when computing scale and zero point (MinimumRealRange)"}, \
	{"tensor_quant_overrides", QD_PT_DICT, "null", NULL, NULL, \
	 "per-tensor overrides (TensorQuantOverrides)"}, \
	{"prepare_qdq_config", QD_PT_BOOL, "true", NULL, NULL, \
	 "QDQ format: build a full-integer QDQ configuration (ORT get_qdq_config)"}

static const struct qd_param qd_params_onnx_quantization[] = {
	{"quant_mode", QD_PT_ENUM, "\"static\"", "[\"dynamic\", \"static\"]", "dynamic|static",
	 "dynamic or static quantization"},
	P_ORT_COMMON,
	{"quant_format", QD_PT_ENUM, "null", "[\"QOperator\", \"QDQ\"]", "QOperator|QDQ",
	 "QOperator (integer ops) or QDQ (Quantize/DequantizeLinear pairs); null: QDQ when "
	 "static, QOperator when dynamic"},
	P_ORT_STATIC_ONLY,
	P_EXTERNAL_DATA,
};

static const struct qd_param qd_params_onnx_dynamic[] = {
	{"quant_mode", QD_PT_ENUM, "\"dynamic\"", NULL, "dynamic", "fixed to dynamic"},
	P_ORT_COMMON,
	{"quant_format", QD_PT_ENUM, "\"QOperator\"", "[\"QOperator\", \"QDQ\"]", "QOperator|QDQ",
	 "QOperator: DynamicQuantizeLinear + MatMulInteger/ConvInteger; QDQ: int weights + "
	 "DequantizeLinear, activations through DynamicQuantizeLinear + DequantizeLinear"},
	P_EXTERNAL_DATA,
};

static const struct qd_param qd_params_onnx_static[] = {
	{"quant_mode", QD_PT_ENUM, "\"static\"", NULL, "static", "fixed to static"},
	P_ORT_COMMON,
	{"quant_format", QD_PT_ENUM, "\"QDQ\"", "[\"QOperator\", \"QDQ\"]", "QOperator|QDQ",
	 "QOperator (QLinear ops) or QDQ (Quantize/DequantizeLinear pairs)"},
	P_ORT_STATIC_ONLY,
	{"execution_provider", QD_PT_ENUM, "null", NULL, "CPUExecutionProvider|QNNExecutionProvider",
	 "the target execution provider (Olive takes it from the accelerator): QNNExecutionProvider "
	 "with prepare_qdq_config applies ORT's get_qnn_qdq_config (QDQ only)"},
	{"prepare_qnn_config", QD_PT_BOOL, "false", NULL, NULL,
	 "Olive <= 0.7 name: true applies the QNN QDQ configuration (as execution_provider "
	 "QNNExecutionProvider does)"},
	P_EXTERNAL_DATA,
};

/* INC passes (passes/inc.c): Olive's names and defaults (reference/olive.md §1.2), run by
 * translation onto OnnxStaticQuantization / OnnxDynamicQuantization / OnnxMatMulNBits. */
#define P_INC_COMMON \
	{"device", QD_PT_ENUM, "\"cpu\"", NULL, "cpu|gpu", \
	 "INC device; no effect (logged): quantd's models are ONNX Runtime CPU-compatible"}, \
	{"backend", QD_PT_ENUM, "\"default\"", NULL, \
	 "default|onnxrt_trt_ep|onnxrt_cuda_ep|onnxrt_dnnl_ep|onnxrt_dml_ep", \
	 "INC backend: onnxrt_trt_ep applies INC's TensorRT rules (QDQ, symmetric int8 activations, " \
	 "Q/DQ on weights, dedicated pairs, no output quantization of Conv/Gemm/Add/MatMul); the " \
	 "others quantize as default (logged)"}, \
	{"domain", QD_PT_ENUM, "\"auto\"", NULL, "auto|cv|object_detection|nlp|recommendation_system", \
	 "model domain (only picks INC's ORT pre-optimization level; no effect, logged)"}, \
	{"workspace", QD_PT_STRING, "null", NULL, NULL, \
	 "directory for the accuracy-aware tuning's candidate models (kept); null: a temporary one"}, \
	{"recipes", QD_PT_DICT, "{}", NULL, NULL, \
	 "INC recipes: smooth_quant (+ smooth_quant_args alpha, folding, op_types, scales_per_op, " \
	 "calib_iter), gemm_to_matmul, graph_optimization_level, first/last_conv_or_matmul_quantization, " \
	 "pre_post_process_quantization, add_qdq_pair_to_weight, dedicated_qdq_pair, " \
	 "optypes_to_exclude_output_quant, rtn_args / gptq_args / awq_args, layer_wise_quant (no effect); " \
	 "fast_bias_correction, weight_correction, teq_args, autoround_args are refused"}, \
	{"reduce_range", QD_PT_BOOL, "false", "[true, false]", NULL, "7-bit weights"}, \
	{"quant_level", QD_PT_ANY, "\"auto\"", NULL, NULL, \
	 "\"auto\" (the default configuration, then basic) or 1 (tuning_criterion.strategy: basic); " \
	 "0 (conservative) is refused"}, \
	{"excluded_precisions", QD_PT_STRLIST, "[]", NULL, NULL, \
	 "bf16 / fp16 (no effect: quantd falls back to fp32 only)"}, \
	{"tuning_criterion", QD_PT_DICT, \
	 "{\"strategy\": \"basic\", \"strategy_kwargs\": null, \"timeout\": 0, \"max_trials\": 5, " \
	 "\"objective\": \"performance\"}", NULL, NULL, \
	 "INC TuningCriterion: strategy basic, timeout seconds (0: stop at the first configuration that " \
	 "meets the criterion), max_trials, objective (performance / modelsize / footprint)"}, \
	{"metric", QD_PT_DICT, "null", NULL, NULL, \
	 "an Olive metric (name, type, sub_types, data_config): with it INC's accuracy-aware basic " \
	 "tuning runs on the first sub_type"}, \
	{"accuracy_criterion", QD_PT_DICT, "null", NULL, NULL, \
	 "INC AccuracyCriterion {criterion relative|absolute, higher_is_better, tolerable_loss}; null: " \
	 "from the metric's goal (Olive's mapping), else relative 0.01"}, \
	{"weight_only_config", QD_PT_DICT, \
	 "{\"bits\": 4, \"group_size\": 4, \"scheme\": \"asym\", \"algorithm\": \"RTN\"}", NULL, NULL, \
	 "weight-only settings: bits 4|8, group_size (power of two >= 16, or -1: one block over K, K <= 256; missing: 32), scheme sym|asym, " \
	 "algorithm RTN|GPTQ|AWQ|HQQ"}, \
	{"op_type_dict", QD_PT_DICT, "{}", NULL, NULL, \
	 "weight_only: {\"MatMul\" or \".*\": {\"weight\": {...}}} over weight_only_config; other " \
	 "approaches: no effect (Olive forces None)"}

#define P_INC_STATIC \
	{"data_config", QD_PT_ANY, "null", NULL, NULL, \
	 "calibration data (required when static, and for weight-only GPTQ / AWQ)"}, \
	{"calibration_sampling_size", QD_PT_ANY, "[100]", NULL, NULL, \
	 "calibration samples: an integer or a list (the first is used; the others are tuning options)"}

static const struct qd_param qd_params_inc_quantization[] = {
	{"approach", QD_PT_ENUM, "\"static\"", "[\"dynamic\", \"static\", \"weight_only\"]",
	 "dynamic|static|weight_only", "INC approach"},
	P_INC_COMMON,
	P_INC_STATIC,
	{"quant_format", QD_PT_ENUM, "\"QOperator\"", "[\"QOperator\", \"QDQ\"]", "QOperator|QDQ|default",
	 "INC format (static approach)"},
	P_EXTERNAL_DATA,
};

static const struct qd_param qd_params_inc_dynamic[] = {
	{"approach", QD_PT_ENUM, "\"dynamic\"", NULL, "dynamic", "fixed to dynamic"},
	P_INC_COMMON,
	P_EXTERNAL_DATA,
};

static const struct qd_param qd_params_inc_static[] = {
	{"approach", QD_PT_ENUM, "\"static\"", NULL, "static|weight_only",
	 "static (Olive's default for this pass); weight_only as Olive's own examples set it"},
	P_INC_COMMON,
	P_INC_STATIC,
	{"quant_format", QD_PT_ENUM, "\"QOperator\"", "[\"QOperator\", \"QDQ\"]", "QOperator|QDQ",
	 "INC format"},
	P_EXTERNAL_DATA,
};

/* VitisAIQuantization (passes/vitis.c, reference/inc_vitis_qnn.md §B.0): Olive's names and
 * defaults; enable_npu_cnn / enable_npu_transformer are vai_q_onnx's later names. */
static const struct qd_param qd_params_vitis_ai[] = {
	{"quant_mode", QD_PT_ENUM, "\"static\"", "[\"static\"]", "static", "static only"},
	{"data_config", QD_PT_ANY, "null", NULL, NULL, "calibration data: a data_configs name or an inline data config (required)"},
	{"precision", QD_PT_ENUM, "\"int8\"", "[\"int8\", \"uint8\"]", "int8|uint8|int16|uint16",
	 "weight type (16-bit: QDQ only, not the DPU form)"},
	{"weight_type", QD_PT_ENUM, "null", NULL, "QInt8|QUInt8|QInt16|QUInt16",
	 "Olive's QuantType spelling of the weight type; when set it overrides precision"},
	{"activation_type", QD_PT_ENUM, "\"uint8\"", NULL, "int8|uint8|int16|uint16|QInt8|QUInt8|QInt16|QUInt16",
	 "activation type (QInt8/QUInt8/QInt16/QUInt16 spellings accepted; 16-bit: QDQ only, not the DPU form; "
	 "searched conditionally on quant_format and precision)"},
	{"input_nodes", QD_PT_STRLIST, "null", NULL, NULL,
	 "node names: every node before the first of them (graph order) is left in float"},
	{"output_nodes", QD_PT_STRLIST, "null", NULL, NULL,
	 "node names: every node after the last of them (graph order) is left in float"},
	{"op_types_to_quantize", QD_PT_STRLIST, "null", NULL, NULL,
	 "quantize only these op types; null means the static pass's default op types"},
	{"nodes_to_quantize", QD_PT_STRLIST, "null", NULL, NULL, "node-name allow list"},
	{"nodes_to_exclude", QD_PT_STRLIST, "null", NULL, NULL, "node-name deny list"},
	{"per_channel", QD_PT_BOOL, "false", "[true, false]", NULL,
	 "per-channel weights (a power-of-two scale per channel); the DPU form is per tensor"},
	{"optimize_model", QD_PT_BOOL, "false", "[true, false]", NULL,
	 "ORT's deprecated optimizer: reported as ignored when true (quant_preprocess does quantd's own folding)"},
	{"use_external_data_format", QD_PT_BOOL, "true", NULL, NULL,
	 "external data while quantizing: ignored (quantd quantizes in memory; see save_as_external_data)"},
	{"quant_preprocess", QD_PT_BOOL, "true", "[true, false]", NULL,
	 "pre-process first in quantd's own C (Constant nodes to initializers, constant and BatchNormalization "
	 "folding, types)"},
	{"calibrate_method", QD_PT_ENUM, "\"MinMSE\"", "[\"NonOverflow\", \"MinMSE\"]",
	 "NonOverflow|MinMSE|MinMax|Entropy|Percentile",
	 "NonOverflow (MinMax ranges, power-of-two scales), MinMSE (the power of two of least squared error over "
	 "every calibration batch; extra_options.MinMSEMode All / MostCommon / Percentile), or ORT's MinMax / "
	 "Entropy / Percentile ranges, their scales snapped to powers of two"},
	{"quant_format", QD_PT_ENUM, "\"QDQ\"", "[\"QDQ\", \"QOperator\"]", "QDQ|QOperator|VitisQuantFormat.QDQ",
	 "QDQ (Quantize/DequantizeLinear pairs) or QOperator (QLinear ops), both with power-of-two scales; "
	 "VitisQuantFormat.QDQ: the QDQ form with vai_q_onnx's com.vai.quantize VitisQuantizeLinear / "
	 "VitisDequantizeLinear ops, which ONNX Runtime cannot run"},
	{"need_layer_fusing", QD_PT_BOOL, "false", "[true, false]", NULL,
	 "DPU form: remove the Q/DQ between Conv / Add / pooling and a following Relu"},
	{"enable_dpu", QD_PT_BOOL, "false", "[true, false]", NULL,
	 "the DPU form (vai_q_onnx's VitisDPUQuantizer): per-tensor symmetric int8, int8 bias Q/DQ, DPU shift constraints"},
	{"enable_npu_cnn", QD_PT_BOOL, "false", NULL, NULL, "later name of enable_dpu (Ryzen AI NPU, CNNs)"},
	{"enable_npu_transformer", QD_PT_BOOL, "false", NULL, NULL,
	 "Ryzen AI NPU, transformers: MatMuls without a constant B are left in float (MatMulConstBOnly)"},
	{"ActivationSymmetric", QD_PT_BOOL, "false", NULL, NULL, "symmetric activations (overrides extra_options)"},
	{"WeightSymmetric", QD_PT_BOOL, "true", NULL, NULL, "symmetric weights (overrides extra_options)"},
	{"AddQDQPairToWeight", QD_PT_BOOL, "false", NULL, NULL,
	 "keep float weights followed by QuantizeLinear and DequantizeLinear (overrides extra_options)"},
	{"include_cle", QD_PT_BOOL, "false", NULL, NULL,
	 "cross-layer equalization before calibration: Conv / Gemm pairs (through Relu, Clip without a max, Pad, spatial ReduceMean) and Conv - depthwise - pointwise triples (extra_options CLESteps, CLEScaleAppendBias, ...)"},
	{"extra_options", QD_PT_DICT, "null", NULL, NULL,
	 "ORT extra_options (checked as the static pass does) and Vitis AI's MinMSEMode"},
	P_EXTERNAL_DATA,
};

static const struct qd_param qd_params_qnn_preprocess[] = {
	{"fuse_layernorm", QD_PT_BOOL, "false", NULL, NULL,
	 "fuse the decomposed ReduceMean / Sub / Pow / ReduceMean / Add / Sqrt / Div / Mul / Add "
	 "sequence into LayerNormalization (opset >= 17)"},
	{"inputs_to_make_channel_last", QD_PT_STRLIST, "null", NULL, NULL,
	 "4-D inputs (N, C, H, W) to turn into (N, H, W, C), with a Transpose back behind each"},
	{"outputs_to_make_channel_last", QD_PT_STRLIST, "null", NULL, NULL,
	 "4-D outputs (N, C, H, W) to turn into (N, H, W, C) with a Transpose in front"},
	{"dynamic_input_shapes", QD_PT_ANY, "null", NULL, NULL,
	 "ORT's dynamic_input_shapes: [[input name, \"1,3,224,224\"], ...] fixes those inputs' shapes "
	 "(and the outputs' shapes) before the fusions"},
	{"exclude_initializer_from_input", QD_PT_BOOL, "false", NULL, NULL,
	 "ORT's exclude_initializer_from_input: remove initializers from the graph inputs"},
	P_EXTERNAL_DATA,
};

static const struct qd_param qd_params_dynamic_to_fixed[] = {
	{"dim_param", QD_PT_STRLIST, "null", NULL, NULL,
	 "symbolic dims to fix (with dim_value, same length), in every declared shape"},
	{"dim_value", QD_PT_ANY, "null", NULL, NULL, "the positive value of each dim_param"},
	{"input_name", QD_PT_STRLIST, "null", NULL, NULL,
	 "inputs whose shape to fix (with input_shape, same length); instead of dim_param"},
	{"input_shape", QD_PT_ANY, "null", NULL, NULL,
	 "the shape of each input_name: a list of positive integers (a fixed dim must keep its value)"},
	P_EXTERNAL_DATA,
};

/* Weight-only passes (passes/weight_only.c). Olive's OnnxBlockWiseRtnQuantization,
 * OnnxHqqQuantization and OnnxMatMul4Quantizer with their names and defaults; quantd adds
 * op_types_to_quantize to OnnxBlockWiseRtnQuantization (MatMul, and Gather into
 * GatherBlockQuantized with the DEFAULT algorithm) and calibration_sampling_size for GPTQ. */
#define P_WO_SELECT \
	{"nodes_to_exclude", QD_PT_STRLIST, "null", NULL, NULL, "node names (or fnmatch globs) never quantized"}, \
	{"nodes_to_include", QD_PT_STRLIST, "null", NULL, NULL, "quantize only these node names (or globs)"}

static const struct qd_param qd_params_blockwise_rtn[] = {
	{"bits", QD_PT_INT, "4", NULL, NULL, "bits per weight: 4 or 8"},
	{"block_size", QD_PT_INT, "128", NULL, NULL, "block size along K (power of 2, >= 16)"},
	{"axis", QD_PT_INT, "0", NULL, NULL, "quantization axis (Gather only in Olive; MatMul: 0)"},
	{"is_symmetric", QD_PT_BOOL, "true", NULL, NULL, "symmetric blocks (no zero points)"},
	{"accuracy_level", QD_PT_INT, "0", NULL, NULL, "MatMulNBits accuracy_level: 0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8"},
	P_WO_SELECT,
	{"op_types_to_quantize", QD_PT_STRLIST, "[\"MatMul\"]", NULL, NULL,
	 "op types: MatMul (MatMulNBits) and Gather (embedding tables, GatherBlockQuantized)"},
	P_EXTERNAL_DATA,
};

static const struct qd_param qd_params_hqq[] = {
	{"block_size", QD_PT_INT, "128", NULL, NULL, "block size along K (power of 2, >= 16)"},
	{"axis", QD_PT_INT, "0", NULL, NULL, "quantization axis of B (0 only)"},
	{"accuracy_level", QD_PT_INT, "0", NULL, NULL, "MatMulNBits accuracy_level: 0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8"},
	P_WO_SELECT,
	P_EXTERNAL_DATA,
};

#define P_MATMUL4_COMMON \
	{"is_symmetric", QD_PT_BOOL, "true", NULL, NULL, "symmetric blocks (no zero points)"}, \
	P_WO_SELECT, \
	{"op_types_to_quantize", QD_PT_STRLIST, "null", NULL, NULL, "op types; null means [\"MatMul\"]; " \
	 "\"Gather\" (embedding tables, GatherBlockQuantized) with the DEFAULT algorithm only"}, \
	{"quant_axes", QD_PT_DICT, "null", NULL, NULL, "axis per op type; MatMul: 0 only, Gather: 1 (the last axis) only"}, \
	{"accuracy_level", QD_PT_INT, "null", NULL, NULL, "0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8"}, \
	{"algorithm", QD_PT_ENUM, "null", NULL, "DEFAULT|HQQ|RTN|GPTQ|AWQ|k_quant", \
	 "DEFAULT (ORT's MLAS round-to-nearest), RTN (INC's), HQQ, GPTQ and AWQ (quantd's addition; both need " \
	 "data_config); null = DEFAULT; k_quant is refused (not implemented)"}, \
	{"weight_only_quant_configs", QD_PT_DICT, "null", NULL, NULL, \
	 "the algorithm's own settings, overriding the pass's: DEFAULT block_size, is_symmetric, accuracy_level; " \
	 "RTN ratios; HQQ block_size, bits, axis; GPTQ percdamp, block_size, actorder, mse, perchannel; " \
	 "AWQ block_size, is_symmetric, accuracy_level"}, \
	{"data_config", QD_PT_ANY, "null", NULL, NULL, "calibration data (GPTQ, AWQ)"}, \
	{"calibration_sampling_size", QD_PT_ANY, "null", NULL, NULL, "GPTQ / AWQ: at most this many samples (null: all)"}, \
	P_EXTERNAL_DATA

static const struct qd_param qd_params_matmul4[] = {
	{"block_size", QD_PT_INT, "32", NULL, NULL, "block size along K (power of 2, >= 16)"},
	P_MATMUL4_COMMON,
};

/* quantd's own name: OnnxMatMul4Quantizer plus bits (4 or 8) */
static const struct qd_param qd_params_matmul_nbits[] = {
	{"block_size", QD_PT_INT, "32", NULL, NULL, "block size along K (power of 2, >= 16)"},
	{"bits", QD_PT_INT, "4", NULL, NULL, "bits per weight: 4 or 8"},
	P_MATMUL4_COMMON,
};

/* ---- the table ---- */

const struct qd_pass_vt qd_pass_table[QD_PASS__COUNT] = {
#define QD_PASS(id, nm, impl, params, chk, rn) \
	[QD_PASS_##id] = {nm, impl, params, QD_ARRAY_LEN(params), chk, rn},
#include "passes/passes.def"
#undef QD_PASS
};
static_assert(QD_PASS__COUNT == 13, "a row was added to passes.def: update this count and the checklist");

/* ---- extra_options (reference/ort_quantization.md §2.3) ---- */

static const struct qd_extra_option qd_extra_options[] = {
	{"ActivationSymmetric", QD_PT_BOOL, true, "symmetric activations"},
	{"WeightSymmetric", QD_PT_BOOL, true, "symmetric weights"},
	{"EnableSubgraph", QD_PT_BOOL, true, "quantize If/Loop/Scan bodies"},
	{"ForceQuantizeNoInputCheck", QD_PT_BOOL, true, "quantize latent ops even with float input"},
	{"MatMulConstBOnly", QD_PT_BOOL, true, "quantize only MatMul with a constant B"},
	{"UseQDQContribOps", QD_PT_BOOL, true, "Q/DQ ops in the com.microsoft domain"},
	{"AddQDQPairToWeight", QD_PT_BOOL, false, "keep float weights followed by Q and DQ"},
	{"OpTypesToExcludeOutputQuantization", QD_PT_STRLIST, false, "no output Q/DQ for these ops"},
	{"DedicatedQDQPair", QD_PT_BOOL, false, "one Q/DQ pair per consumer"},
	{"QDQOpTypePerChannelSupportToAxis", QD_PT_DICT, false, "per-channel axis per op type"},
	{"CalibTensorRangeSymmetric", QD_PT_BOOL, false, "symmetrize calibrated ranges"},
	{"CalibStridedMinMax", QD_PT_INT, false, "calibrate in chunks"},
	{"CalibMovingAverage", QD_PT_BOOL, false, "MinMax moving average"},
	{"CalibMovingAverageConstant", QD_PT_FLOAT, false, "EMA factor"},
	{"CalibMaxIntermediateOutputs", QD_PT_INT, false, "MinMax memory cap"},
	{"CalibPercentile", QD_PT_FLOAT, false, "percentile"},
	{"QuantizeBias", QD_PT_BOOL, false, "int32 bias (QDQ)"},
	{"SmoothQuant", QD_PT_BOOL, false, "SmoothQuant"},
	{"SmoothQuantAlpha", QD_PT_FLOAT, false, "SmoothQuant alpha"},
	{"SmoothQuantFolding", QD_PT_BOOL, false, "SmoothQuant folding"},
	{"MinimumRealRange", QD_PT_FLOAT, false, "minimum rmax - rmin"},
	{"TensorQuantOverrides", QD_PT_DICT, false, "per-tensor overrides"},
	{"QDQKeepRemovableActivations", QD_PT_BOOL, false, "keep Relu/Clip"},
	{"QDQDisableWeightAdjustForInt32Bias", QD_PT_BOOL, false, "no weight-scale adjustment"},
	{"extra.Sigmoid.nnapi", QD_PT_BOOL, false, "fixed Sigmoid output scale"},
	{"DefaultTensorType", QD_PT_INT, false, "fallback element type (QOperator)"},
	{"CalibNumBins", QD_PT_INT, false, "histogram bins (Entropy 128, Percentile / Distribution 2048)"},
	{"CalibNumQuantizedBins", QD_PT_INT, false, "Entropy: quantized bins (128)"},
	{"CalibDistributionScenario", QD_PT_STRING, false, "Distribution: \"same\" or \"p3\""},
};

const struct qd_extra_option *qd_extra_option_find(const char *key)
{
	for (size_t i = 0; i < QD_ARRAY_LEN(qd_extra_options); i++)
		if (!strcmp(qd_extra_options[i].key, key))
			return &qd_extra_options[i];
	return NULL;
}

const char *qd_param_type_name(enum qd_param_type t)
{
	static const char *const names[] = {"bool", "int", "float", "string", "enum", "string_list",
					    "dict", "any"};
	return (unsigned)t < QD_ARRAY_LEN(names) ? names[t] : "unknown";
}

/* Does v have the parameter's type? (null is checked by the caller.) */
bool qd_pass_choice_has(const char *list, const char *s)
{
	size_t n = strlen(s);
	for (const char *p = list; p && *p;) {
		const char *e = strchr(p, '|');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len == n && !strncmp(p, s, n))
			return true;
		p = e ? e + 1 : p + len;
	}
	return false;
}

static bool value_has_type(enum qd_param_type t, const char *choices, const json_t *v)
{
	switch (t) {
	case QD_PT_BOOL: return json_is_boolean(v);
	case QD_PT_INT: return json_is_integer(v);
	case QD_PT_FLOAT: return json_is_number(v);
	case QD_PT_STRING: return json_is_string(v);
	case QD_PT_ENUM: {
		if (!json_is_string(v))
			return false;
		return qd_pass_choice_has(choices, json_string_value(v));
	}
	case QD_PT_STRLIST: {
		if (!json_is_array(v))
			return false;
		size_t i; json_t *x;
		json_array_foreach(v, i, x)
			if (!json_is_string(x))
				return false;
		return true;
	}
	case QD_PT_DICT: return json_is_object(v);
	case QD_PT_ANY: return true;
	}
	return false;
}

int qd_extra_options_check(const json_t *opts, bool dynamic_only, const char *field_prefix,
			   struct qd_err *err)
{
	if (!opts || json_is_null(opts))
		return 0;
	if (!json_is_object(opts))
		return qd_err_set(err, QD_EINVAL, field_prefix, "extra_options must be an object");
	const char *k; json_t *v;
	json_object_foreach((json_t *)opts, k, v) {
		char field[128];
		snprintf(field, sizeof field, "%s.%s", field_prefix, k);
		const struct qd_extra_option *o = qd_extra_option_find(k);
		if (!o)
			return qd_err_set(err, QD_EINVAL, field, "unknown extra_options key '%s'", k);
		if (!value_has_type(o->type, NULL, v))
			return qd_err_set(err, QD_EINVAL, field, "extra_options key '%s' must be of type %s",
					  k, qd_param_type_name(o->type));
		if (dynamic_only && !o->dynamic)
			return qd_err_set(err, QD_EUNSUPPORTED, field,
					  "extra_options key '%s' does not apply to dynamic quantization", k);
	}
	return 0;
}

/* ---- lookup ---- */

const struct qd_pass_vt *qd_pass_find(const char *type_name)
{
	if (!type_name)
		return NULL;
	for (size_t i = 0; i < QD_PASS__COUNT; i++)
		if (!strcasecmp(qd_pass_table[i].name, type_name))
			return &qd_pass_table[i];
	return NULL;
}

const struct qd_param *qd_pass_param(const struct qd_pass_vt *vt, const char *name)
{
	for (size_t i = 0; i < vt->n_params; i++)
		if (!strcmp(vt->params[i].name, name))
			return &vt->params[i];
	return NULL;
}

static json_t *json_text(const char *s)
{
	return json_loads(s, JSON_DECODE_ANY, NULL);
}

/* ---- resolver ---- */

static int check_value(const struct qd_param *p, const json_t *v, const char *field, struct qd_err *err)
{
	if (json_is_null(v)) {
		if (!strcmp(p->dflt, "null"))
			return 0;
		return qd_err_set(err, QD_EINVAL, field, "parameter '%s' cannot be null", p->name);
	}
	if (value_has_type(p->type, p->choices, v))
		return 0;
	if (p->type == QD_PT_ENUM)
		return qd_err_set(err, QD_EINVAL, field, "parameter '%s' must be one of %s", p->name,
				  p->choices);
	return qd_err_set(err, QD_EINVAL, field, "parameter '%s' must be of type %s", p->name,
			  qd_param_type_name(p->type));
}

static bool is_scalar_type(enum qd_param_type t)
{
	return t == QD_PT_BOOL || t == QD_PT_INT || t == QD_PT_FLOAT || t == QD_PT_STRING ||
	       t == QD_PT_ENUM;
}

static bool is_special(const json_t *v)
{
	return json_is_string(v) && (!strcmp(json_string_value(v), QD_PASS_IGNORED) ||
				     !strcmp(json_string_value(v), QD_PASS_INVALID));
}

static void append_unique(json_t *arr, const json_t *v)
{
	size_t i; json_t *x;
	json_array_foreach(arr, i, x)
		if (json_equal(x, (json_t *)v))
			return;
	json_array_append(arr, (json_t *)v);
}

bool qd_pass_is_search_param(const json_t *v)
{
	const char *t = json_string_value(json_object_get(v, "olive_parameter_type"));
	return t && !strcmp(t, "SearchParameter");
}

/* The values a Conditional's leaves allow, each type-checked, into arr (unique). */
static int cond_leaves(const struct qd_param *p, const json_t *node, int depth, const char *field, json_t *arr,
		       struct qd_err *err)
{
	if (is_special(node))
		return 0;
	if (depth > 0 && json_is_object(node) && !qd_pass_is_search_param(node)) {
		const char *k; json_t *x;
		json_object_foreach((json_t *)node, k, x) {
			int rc = cond_leaves(p, x, depth - 1, field, arr, err);
			if (rc < 0)
				return rc;
		}
		return 0;
	}
	const json_t *list = node;
	if (qd_pass_is_search_param(node)) {
		const char *t = json_string_value(json_object_get(node, "type"));
		if (t && !strcmp(t, "Boolean"))
			list = NULL;
		else if (!t || strcmp(t, "Categorical"))
			return qd_err_set(err, QD_EINVAL, field, "a Conditional's leaf for '%s' must be a value, a "
					  "list, a Categorical or Boolean SearchParameter, \"%s\" or \"%s\"", p->name,
					  QD_PASS_IGNORED, QD_PASS_INVALID);
		else
			list = json_object_get(node, "support");
		if (!list) {
			json_t *b = json_pack("[bb]", 1, 0);
			for (size_t i = 0; i < 2; i++) {
				int rc = check_value(p, json_array_get(b, i), field, err);
				if (rc < 0) {
					json_decref(b);
					return rc;
				}
				append_unique(arr, json_array_get(b, i));
			}
			json_decref(b);
			return 0;
		}
	}
	if (json_is_array(list) && is_scalar_type(p->type)) {
		size_t i; json_t *x;
		json_array_foreach(list, i, x) {
			int rc = check_value(p, x, field, err);
			if (rc < 0)
				return rc;
			append_unique(arr, x);
		}
		return 0;
	}
	int rc = check_value(p, list, field, err);
	if (rc == 0)
		append_unique(arr, list);
	return rc;
}

/* An Olive SearchParameter object as a parameter's value: Categorical (support: list),
 * Boolean, Conditional / ConditionalDefault (parents, support nested one level per
 * parent, default). Candidates into arr; a Conditional's rule into *cond (new). */
static int resolve_search_param(const struct qd_param *p, const json_t *v, const char *field, json_t *arr,
				json_t **cond, struct qd_err *err)
{
	const char *t = json_string_value(json_object_get(v, "type"));
	const json_t *support = json_object_get(v, "support");
	if (t && !strcmp(t, "Boolean")) {
		if (p->type != QD_PT_BOOL)
			return qd_err_set(err, QD_EINVAL, field, "a Boolean SearchParameter needs a bool parameter; "
					  "'%s' is of type %s", p->name, qd_param_type_name(p->type));
		json_array_append_new(arr, json_true());
		json_array_append_new(arr, json_false());
		return 0;
	}
	if (t && !strcmp(t, "Categorical")) {
		if (!json_is_array(support) || !json_array_size(support))
			return qd_err_set(err, QD_EINVAL, field, "a Categorical SearchParameter needs a non-empty "
					  "\"support\" list");
		size_t i; json_t *x;
		json_array_foreach(support, i, x) {
			int rc = check_value(p, x, field, err);
			if (rc < 0)
				return rc;
			append_unique(arr, x);
		}
		return 0;
	}
	if (t && (!strcmp(t, "Conditional") || !strcmp(t, "ConditionalDefault"))) {
		const json_t *parents = json_object_get(v, "parents");
		if (!json_is_array(parents) || !json_array_size(parents))
			return qd_err_set(err, QD_EINVAL, field, "a %s SearchParameter needs a non-empty \"parents\" "
					  "list", t);
		size_t i; json_t *x;
		json_array_foreach(parents, i, x)
			if (!json_is_string(x) || !strcmp(json_string_value(x), p->name))
				return qd_err_set(err, QD_EINVAL, field, "\"parents\" of '%s' must name other "
						  "parameters of the pass", p->name);
		if (!json_is_object(support))
			return qd_err_set(err, QD_EINVAL, field, "a %s SearchParameter needs a \"support\" object "
					  "(one level of keys per parent)", t);
		int rc = cond_leaves(p, support, (int)json_array_size(parents), field, arr, err);
		const json_t *d = json_object_get(v, "default");
		if (rc == 0 && d && !json_is_null(d))
			rc = cond_leaves(p, d, 0, field, arr, err);
		if (rc < 0)
			return rc;
		if (!json_array_size(arr))
			json_array_append_new(arr, json_text(p->dflt));
		*cond = json_pack("{s:O, s:O, s:o}", "parents", parents, "support", support, "default",
				  d ? json_incref((json_t *)d) : json_string(QD_PASS_INVALID));
		return *cond ? 0 : qd_err_set(err, QD_ENOMEM, field, "out of memory");
	}
	return qd_err_set(err, QD_EINVAL, field, "unknown SearchParameter type '%s' for '%s' (Categorical, "
			  "Boolean, Conditional, ConditionalDefault)", t ? t : "(none)", p->name);
}

/* Candidates for one parameter from the user's value (NULL = absent). */
static int resolve_one(const struct qd_param *p, const json_t *v, const char *field, unsigned flags,
		       json_t **out, json_t **cond, struct qd_err *err)
{
	*out = NULL;
	json_t *arr = json_array();
	if (!arr)
		return qd_err_set(err, QD_ENOMEM, field, "out of memory");
	int rc = 0;
	if (json_is_object(v) && qd_pass_is_search_param(v)) {
		if ((rc = resolve_search_param(p, v, field, arr, cond, err)) < 0)
			goto out;
	} else if ((!v && !((flags & QD_RESOLVE_SEARCH_UNSET) && p->search)) ||
		   (json_is_string(v) && !strcmp(json_string_value(v), "DEFAULT_VALUE"))) {
		json_array_append_new(arr, json_text(p->dflt));
	} else if (!v ||
		   (json_is_string(v) && !strcmp(json_string_value(v), "SEARCHABLE_VALUES"))) {
		json_t *s = p->search ? json_text(p->search) : NULL;
		if (s && json_array_size(s) > 0) {
			json_decref(arr);
			arr = s;
		} else {
			json_decref(s);
			json_array_append_new(arr, json_text(p->dflt));
		}
	} else if (json_is_array(v) && is_scalar_type(p->type)) {
		if (json_array_size(v) == 0) {
			rc = qd_err_set(err, QD_EINVAL, field, "parameter '%s' has an empty list of values",
					p->name);
			goto out;
		}
		size_t i; json_t *x;
		json_array_foreach(v, i, x) {
			if ((rc = check_value(p, x, field, err)) < 0)
				goto out;
			json_array_append(arr, x);
		}
	} else {
		if ((rc = check_value(p, v, field, err)) < 0)
			goto out;
		json_array_append(arr, (json_t *)v);
	}
	for (size_t i = 0; i < json_array_size(arr); i++)
		if (!json_array_get(arr, i)) {
			rc = qd_err_set(err, QD_EINTERNAL, field, "bad schema default for '%s'", p->name);
			goto out;
		}
	*out = arr;
	arr = NULL;
out:
	json_decref(arr);
	return rc;
}

/* Conditional rules quantd's schemas imply (Olive wraps OnnxQuantization's static-only
 * parameters in a Conditional on quant_mode: dynamic ignores them). */
static const char *const onnxq_static_only[] = {
	"data_config", "calibrate_method", "calibration_providers", "activation_type",
	"calibration_sampling_size", "min_real_range", "tensor_quant_overrides", "prepare_qdq_config",
};

static void builtin_conds(const struct qd_pass_vt *vt, json_t *conds)
{
	if (strcmp(vt->name, "OnnxQuantization"))
		return;
	for (size_t i = 0; i < QD_ARRAY_LEN(onnxq_static_only); i++)
		if (!json_object_get(conds, onnxq_static_only[i]))
			json_object_set_new(conds, onnxq_static_only[i],
					    json_pack("{s:[s], s:{s:s}, s:s}", "parents", "quant_mode", "support",
						      "dynamic", QD_PASS_IGNORED, "default", QD_PASS_ANY));
}

/* Olive searches an unset activation_type conditionally on (quant_format, precision):
 * QDQ int8 -> int8, QDQ uint8 -> uint8, QOperator uint8 -> uint8. Olive marks QOperator
 * with int8 weights INVALID; quantd runs it with uint8 activations (QLinear kernels take
 * u8 activations with s8 weights). Other precisions keep both. OnnxQuantization adds
 * quant_mode in front: dynamic ignores activation_type. */
static json_t *activation_search(const struct qd_pass_vt *vt, json_t **cond)
{
	json_t *fmt = json_pack("{s:{s:[s], s:[s]}, s:{s:[s], s:[s]}}", "QDQ", "int8", "int8", "uint8", "uint8",
				"QOperator", "int8", "uint8", "uint8", "uint8");
	if (!strcmp(vt->name, "OnnxQuantization"))
		*cond = json_pack("{s:[sss], s:{s:o, s:s}, s:s}", "parents", "quant_mode", "quant_format", "precision",
				  "support", "static", fmt, "dynamic", QD_PASS_IGNORED, "default", QD_PASS_ANY);
	else
		*cond = json_pack("{s:[ss], s:o, s:s}", "parents", "quant_format", "precision", "support", fmt,
				  "default", QD_PASS_ANY);
	return json_pack("[ss]", "int8", "uint8");
}

int qd_pass_resolve(const struct qd_pass_vt *vt, const char *pass_name, const json_t *user,
		    json_t **space, struct qd_err *err)
{
	return qd_pass_resolve_ex(vt, pass_name, user, 0, space, NULL, err);
}

int qd_pass_resolve_ex(const struct qd_pass_vt *vt, const char *pass_name, const json_t *user, unsigned flags,
		       json_t **space, json_t **conds, struct qd_err *err)
{
	*space = NULL;
	if (conds)
		*conds = NULL;
	char field[128];
	snprintf(field, sizeof field, "passes.%s", pass_name);
	if (!json_is_object(user))
		return qd_err_set(err, QD_EINVAL, field, "pass '%s' must be an object", pass_name);
	const json_t *cfg = json_object_get(user, "config");
	if (cfg && !json_is_object(cfg)) {
		snprintf(field, sizeof field, "passes.%s.config", pass_name);
		return qd_err_set(err, QD_EINVAL, field, "pass '%s' config must be an object", pass_name);
	}
	/* Unknown keys first, at the top level and inside "config". */
	const json_t *layers[2] = {user, cfg};
	for (int l = 0; l < 2; l++) {
		if (!layers[l])
			continue;
		const char *k; json_t *v;
		json_object_foreach((json_t *)layers[l], k, v) {
			if (l == 0 && (!strcmp(k, "type") || !strcmp(k, "config")))
				continue;
			if (qd_pass_param(vt, k))
				continue;
			snprintf(field, sizeof field, "passes.%s.%s%s", pass_name, l ? "config." : "", k);
			return qd_err_set(err, QD_EINVAL, field, "unknown parameter '%s' for pass type '%s'",
					  k, vt->name);
		}
	}
	json_t *sp = json_object(), *cs = json_object();
	if (!sp || !cs) {
		json_decref(sp);
		json_decref(cs);
		return qd_err_set(err, QD_ENOMEM, NULL, "out of memory");
	}
	int rc = 0;
	for (size_t i = 0; i < vt->n_params; i++) {
		const struct qd_param *p = &vt->params[i];
		const json_t *v = json_object_get(user, p->name);
		if (!v && cfg)
			v = json_object_get(cfg, p->name);
		snprintf(field, sizeof field, "passes.%s.%s", pass_name, p->name);
		json_t *cand, *cond = NULL;
		if ((rc = resolve_one(p, v, field, flags, &cand, &cond, err)) < 0)
			goto out;
		if (!v && (flags & QD_RESOLVE_SEARCH_UNSET) && !strcmp(p->name, "activation_type") &&
		    (!strcmp(vt->name, "OnnxQuantization") || !strcmp(vt->name, "OnnxStaticQuantization") ||
		     !strcmp(vt->name, "VitisAIQuantization"))) {
			json_decref(cand);
			cand = activation_search(vt, &cond);
		}
		json_object_set_new(sp, p->name, cand);
		if (cond) {
			size_t k; json_t *x;
			json_array_foreach(json_object_get(cond, "parents"), k, x)
				if (!qd_pass_param(vt, json_string_value(x))) {
					json_decref(cond);
					rc = qd_err_set(err, QD_EINVAL, field, "Conditional parent '%s' is not a "
							"parameter of pass type '%s'", json_string_value(x), vt->name);
					goto out;
				}
			json_object_set_new(cs, p->name, cond);
		}
	}
	builtin_conds(vt, cs);
	*space = sp;
	sp = NULL;
	if (conds) {
		*conds = cs;
		cs = NULL;
	}
out:
	json_decref(sp);
	json_decref(cs);
	return rc;
}

json_t *qd_pass_space_first(const json_t *space)
{
	json_t *o = json_object();
	const char *k; json_t *v;
	if (!o)
		return NULL;
	json_object_foreach((json_t *)space, k, v)
		json_object_set(o, k, json_array_get(v, 0));
	return o;
}

/* ---- GET /v1/passes ---- */

json_t *qd_passes_json(void)
{
	json_t *list = json_array();
	for (size_t i = 0; i < QD_PASS__COUNT; i++) {
		const struct qd_pass_vt *vt = &qd_pass_table[i];
		json_t *params = json_array();
		for (size_t j = 0; j < vt->n_params; j++) {
			const struct qd_param *p = &vt->params[j];
			json_t *o = json_pack("{s:s, s:s, s:o, s:o, s:s}", "name", p->name, "type",
					      qd_param_type_name(p->type), "default", json_text(p->dflt),
					      "search_values", p->search ? json_text(p->search) : json_null(),
					      "description", p->desc);
			if (p->choices) {
				json_t *c = json_array();
				for (const char *s = p->choices; *s;) {
					const char *e = strchr(s, '|');
					size_t len = e ? (size_t)(e - s) : strlen(s);
					json_array_append_new(c, json_stringn(s, len));
					s = e ? e + 1 : s + len;
				}
				json_object_set_new(o, "allowed_values", c);
			}
			json_array_append_new(params, o);
		}
		json_array_append_new(list, json_pack("{s:s, s:b, s:o}", "type", vt->name,
						      "implemented", vt->implemented, "parameters", params));
	}
	json_t *eo = json_array();
	for (size_t i = 0; i < QD_ARRAY_LEN(qd_extra_options); i++)
		json_array_append_new(eo, json_pack("{s:s, s:s, s:b, s:s}", "key", qd_extra_options[i].key,
						    "type", qd_param_type_name(qd_extra_options[i].type),
						    "dynamic", qd_extra_options[i].dynamic,
						    "description", qd_extra_options[i].desc));
	return json_pack("{s:o, s:o}", "passes", list, "extra_options", eo);
}
