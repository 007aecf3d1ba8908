// Builds trainable TorchScript modules from parameter tensors and TorchScript source, so the
// attack lab can create models whose BatchNorm honours train/eval mode (tracing would bake the
// mode in). Plain C ABI; errors come back as malloc'd strings freed with fstgate_string_free.
#include <torch/script.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace {
char *copy_string(const std::string &s) {
  char *out = static_cast<char *>(std::malloc(s.size() + 1));
  std::memcpy(out, s.c_str(), s.size() + 1);
  return out;
}

template <typename F> int guarded(char **err, F f) {
  try {
    f();
    return 0;
  } catch (const std::exception &e) {
    *err = copy_string(e.what());
    return -1;
  }
}
} // namespace

extern "C" {

void fstgate_string_free(char *s) { std::free(s); }

// A new module of class `qualified_name`. With `parent` set, the class lives in the parent's
// compilation unit (names mangled on clash) so one saved archive holds the whole tree.
void *fstgate_module_new(const char *qualified_name, void *parent, char **err) {
  torch::jit::Module *out = nullptr;
  int rc = guarded(err, [&] {
    if (parent) {
      auto cu = static_cast<torch::jit::Module *>(parent)->_ivalue()->compilation_unit();
      out = new torch::jit::Module(c10::QualifiedName(qualified_name), cu, true);
    } else {
      out = new torch::jit::Module(c10::QualifiedName(qualified_name));
    }
    if (!out->hasattr("training")) {
      out->register_attribute("training", c10::BoolType::get(), true);
    }
  });
  return rc == 0 ? out : nullptr;
}

void fstgate_module_free(void *m) { delete static_cast<torch::jit::Module *>(m); }

int fstgate_module_register_tensor(void *m, const char *name, void *tensor, int is_parameter,
                                   char **err) {
  return guarded(err, [&] {
    auto *module = static_cast<torch::jit::Module *>(m);
    auto *t = static_cast<torch::Tensor *>(tensor);
    if (is_parameter) {
      module->register_parameter(name, *t, false);
    } else {
      module->register_buffer(name, *t);
    }
  });
}

int fstgate_module_register_submodule(void *m, const char *name, void *child, char **err) {
  return guarded(err, [&] {
    static_cast<torch::jit::Module *>(m)->register_module(
        name, *static_cast<torch::jit::Module *>(child));
  });
}

int fstgate_module_define(void *m, const char *source, char **err) {
  return guarded(err, [&] { static_cast<torch::jit::Module *>(m)->define(source); });
}

int fstgate_module_save(void *m, const char *path, char **err) {
  return guarded(err, [&] { static_cast<torch::jit::Module *>(m)->save(path); });
}
}
