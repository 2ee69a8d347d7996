// edgevl quantize: rewrite a GGUF's weight matrices in a block format (like llama-quantize
// --pure): every 2-D tensor whose rows fit the block becomes the target type; 1-D tensors (norms,
// biases) stay F32; rows that do not fit fall back as llama.cpp does (K-quants to the legacy
// format of the same width, others to F16).
#include <chrono>
#include <filesystem>
#include <cstdio>
#include <vector>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "io/gguf.h"
#include "kernels/quants.h"
#include "models/layout.h"

namespace edgevl::cli {

void add_quantize(CLI::App& app) {
  struct Opts {
    std::string in, out, type;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand(
      "quantize", "Write a GGUF with weights in another type (F16, BF16, Q8_0, Q4_0, Q4_K, ...), from a GGUF or an HF folder");
  cmd->add_option("input", o->in, "Input .gguf (F32, F16 or BF16 weights) or Hugging Face model folder")
      ->required()
      ->check(CLI::ExistingPath);
  cmd->add_option("output", o->out, "Output .gguf")->required();
  cmd->add_option("type", o->type, "Target type: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K Q5_K Q6_K")->required();
  add_thread_option(cmd, o->threads);
  cmd->callback([o] {
    auto target = dtype_from_name(o->type);
    EV_CHECK(target && (*target == DType::F32 || *target == DType::F16 || *target == DType::BF16 ||
                        *target == DType::Q8_0 || *target == DType::Q4_0 || *target == DType::Q4_1 ||
                        *target == DType::Q5_0 || *target == DType::Q5_1 || *target == DType::Q4_K ||
                        *target == DType::Q5_K || *target == DType::Q6_K),
             "quantize: unsupported target type '", o->type, "'");
    if (std::filesystem::is_directory(o->in)) {
      convert_hf_to_gguf(o->in, o->out, *target, o->threads);
      return;
    }
    auto in = gguf::File::open(o->in);
    gguf::Writer w;
    w.copy_metadata(*in);
    w.set_u32("general.file_type", (uint32_t)gguf::llama_file_type(*target));
    w.set_u32("general.quantization_version", 2);
    ThreadPool pool(o->threads > 0 ? o->threads : default_thread_count());
    auto t0 = std::chrono::steady_clock::now();
    size_t done = 0;
    for (const TensorRef& t : in->tensors()) {
      ++done;
      const bool matrix = t.shape.size() >= 2;
      const DType to = !matrix ? t.dtype : gguf::llama_cpp_keeps_f32(t.name) ? DType::F32 : type_for_row(*target, t.shape.back());
      if (to == t.dtype) {
        w.add_tensor(t.name, t.dtype, t.shape, t.data, t.nbytes);
        continue;
      }
      EV_CHECK(t.dtype == DType::F32 || t.dtype == DType::F16 || t.dtype == DType::BF16 || !matrix, o->in,
               ": tensor '", t.name, "' is ", dtype_name(t.dtype), "; requantizing quantized weights loses accuracy, "
               "start from an F32/F16/BF16 file");
      const int64_t cols = t.shape.back(), rows = t.numel() / cols;
      const size_t in_row = row_bytes(t.dtype, cols), out_row = row_bytes(to, cols);
      std::vector<uint8_t> bytes(out_row * rows);
      pool.parallel_for(rows, 16, [&](int64_t b, int64_t e) {
        std::vector<float> tmp(cols);
        for (int64_t r = b; r < e; ++r) {
          dequantize_row(t.dtype, t.data + r * in_row, tmp.data(), cols);
          quantize_row(to, tmp.data(), bytes.data() + r * out_row, cols);
        }
      });
      w.add_tensor(t.name, to, t.shape, std::move(bytes));
      std::fprintf(stderr, "\r[%zu/%zu] %-40s %s -> %s", done, in->tensors().size(), t.name.c_str(),
                   dtype_name(t.dtype), dtype_name(to));
    }
    std::fprintf(stderr, "\nwriting %s\n", o->out.c_str());
    w.write(o->out);
    std::fprintf(stderr, "done in %.1f s\n",
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  });
}

}  // namespace edgevl::cli
