"""The catalog a fresh platform starts with. Specs are the vendors' published datasheet figures:
memory bandwidth in GB/s, dense (not sparse) FP16/BF16 and FP8 tensor throughput in TFLOPS,
maximum board power in watts. A machine's vCPUs and system RAM per GPU are chosen like the clouds'
8-GPU machines of each model (8 × H100: 208 vCPUs and 1,800 GB)."""

from __future__ import annotations

from typing import Any

GPU_MODELS: list[dict[str, Any]] = [
    {
        "slug": "nvidia-a100",
        "vendor": "nvidia",
        "name": "NVIDIA A100 80GB",
        "architecture": "Ampere",
        "memory_gb": 80,
        "memory_type": "HBM2e",
        "memory_bandwidth_gbps": 2039,
        "fp16_tflops": 312,
        "fp8_tflops": None,
        "tdp_watts": 400,
        "form_factor": "SXM4",
        "vcpus_per_gpu": 12,
        "ram_gb_per_gpu": 144,
        "description": "The proven workhorse for training and inference at a low hourly rate.",
        "price_per_gpu_hour_cents": 149,
    },
    {
        "slug": "nvidia-h100",
        "vendor": "nvidia",
        "name": "NVIDIA H100 SXM",
        "architecture": "Hopper",
        "memory_gb": 80,
        "memory_type": "HBM3",
        "memory_bandwidth_gbps": 3350,
        "fp16_tflops": 989,
        "fp8_tflops": 1979,
        "tdp_watts": 700,
        "form_factor": "SXM5",
        "vcpus_per_gpu": 26,
        "ram_gb_per_gpu": 225,
        "description": "Hopper with the Transformer Engine and FP8 for large-model training.",
        "price_per_gpu_hour_cents": 249,
    },
    {
        "slug": "nvidia-h200",
        "vendor": "nvidia",
        "name": "NVIDIA H200",
        "architecture": "Hopper",
        "memory_gb": 141,
        "memory_type": "HBM3e",
        "memory_bandwidth_gbps": 4800,
        "fp16_tflops": 989,
        "fp8_tflops": 1979,
        "tdp_watts": 700,
        "form_factor": "SXM5",
        "vcpus_per_gpu": 28,
        "ram_gb_per_gpu": 369,
        "description": "H100 compute with 141 GB of HBM3e for long contexts and big batches.",
        "price_per_gpu_hour_cents": 349,
    },
    {
        "slug": "nvidia-b200",
        "vendor": "nvidia",
        "name": "NVIDIA B200",
        "architecture": "Blackwell",
        "memory_gb": 180,
        "memory_type": "HBM3e",
        "memory_bandwidth_gbps": 8000,
        "fp16_tflops": 2250,
        "fp8_tflops": 4500,
        "tdp_watts": 1000,
        "form_factor": "SXM6",
        "vcpus_per_gpu": 28,
        "ram_gb_per_gpu": 496,
        "description": "Blackwell: twice Hopper's tensor throughput and 8 TB/s of bandwidth.",
        "price_per_gpu_hour_cents": 599,
    },
    {
        "slug": "amd-mi250x",
        "vendor": "amd",
        "name": "AMD Instinct MI250X",
        "architecture": "CDNA 2",
        "memory_gb": 128,
        "memory_type": "HBM2e",
        "memory_bandwidth_gbps": 3277,
        "fp16_tflops": 383,
        "fp8_tflops": None,
        "tdp_watts": 560,
        "form_factor": "OAM",
        "vcpus_per_gpu": 16,
        "ram_gb_per_gpu": 128,
        "description": "Exascale-class HPC accelerator with 128 GB of HBM2e.",
        "price_per_gpu_hour_cents": 99,
    },
    {
        "slug": "amd-mi300x",
        "vendor": "amd",
        "name": "AMD Instinct MI300X",
        "architecture": "CDNA 3",
        "memory_gb": 192,
        "memory_type": "HBM3",
        "memory_bandwidth_gbps": 5300,
        "fp16_tflops": 1307,
        "fp8_tflops": 2615,
        "tdp_watts": 750,
        "form_factor": "OAM",
        "vcpus_per_gpu": 12,
        "ram_gb_per_gpu": 231,
        "description": "192 GB of HBM3 on one GPU: whole large models without sharding.",
        "price_per_gpu_hour_cents": 219,
    },
    {
        "slug": "amd-mi325x",
        "vendor": "amd",
        "name": "AMD Instinct MI325X",
        "architecture": "CDNA 3",
        "memory_gb": 256,
        "memory_type": "HBM3e",
        "memory_bandwidth_gbps": 6000,
        "fp16_tflops": 1307,
        "fp8_tflops": 2615,
        "tdp_watts": 1000,
        "form_factor": "OAM",
        "vcpus_per_gpu": 16,
        "ram_gb_per_gpu": 288,
        "description": "MI300X compute with 256 GB of HBM3e at 6 TB/s.",
        "price_per_gpu_hour_cents": 279,
    },
    {
        "slug": "amd-mi355x",
        "vendor": "amd",
        "name": "AMD Instinct MI355X",
        "architecture": "CDNA 4",
        "memory_gb": 288,
        "memory_type": "HBM3e",
        "memory_bandwidth_gbps": 8000,
        "fp16_tflops": 2500,
        "fp8_tflops": 5000,
        "tdp_watts": 1400,
        "form_factor": "OAM",
        "vcpus_per_gpu": 16,
        "ram_gb_per_gpu": 384,
        "description": "CDNA 4 with 288 GB of HBM3e and new low-precision formats.",
        "price_per_gpu_hour_cents": 399,
    },
]

PRICING_POLICY: dict[str, Any] = {
    "id": 1,
    "currency": "usd",
    "vcpu_hour_millicents": 5_000,  # 5 ¢ per vCPU-hour
    "storage_gb_hour_millicents": 100,  # 0.1 ¢ per GB-hour
    "gpu_counts": [1, 2, 4, 8],
    "vcpu_options": [12, 24, 48, 96],
    "storage_gb_options": [100, 500, 1000, 2000],
    "regions": ["us-east-1", "us-west-2", "eu-central-1"],
    "region_cities": {
        "us-east-1": "N. Virginia",
        "us-west-2": "Oregon",
        "eu-central-1": "Frankfurt",
    },
    "default_region": "us-east-1",
    "min_hours": 1,
    "max_hours": 720,
}


def _versions(*components: tuple[str, str]) -> list[dict[str, str]]:
    return [{"name": name, "version": version} for name, version in components]


# What machines can be installed with. CUDA and ROCm releases as NVIDIA and AMD ship them,
# frameworks at the versions whose wheels are built for them. An image without a vendor has the
# driver only and is offered for every GPU.
MACHINE_IMAGES: list[dict[str, Any]] = [
    {
        "slug": "ubuntu-24.04-cuda-12.6",
        "name": "Ubuntu 24.04 with CUDA",
        "description": "Ubuntu 24.04 LTS with the NVIDIA driver, CUDA 12.6 and cuDNN.",
        "versions": _versions(("Ubuntu", "24.04"), ("CUDA", "12.6"), ("cuDNN", "9.5")),
        "vendor": "nvidia",
        "is_default": True,
    },
    {
        "slug": "ubuntu-22.04-cuda-12.4",
        "name": "Ubuntu 22.04 with CUDA",
        "description": "Ubuntu 22.04 LTS with the NVIDIA driver, CUDA 12.4 and cuDNN.",
        "versions": _versions(("Ubuntu", "22.04"), ("CUDA", "12.4"), ("cuDNN", "9.1")),
        "vendor": "nvidia",
        "is_default": False,
    },
    {
        "slug": "pytorch-2.6-cuda-12.6",
        "name": "PyTorch",
        "description": "PyTorch with torchvision and torchaudio in Python 3.12, on CUDA 12.6.",
        "versions": _versions(
            ("Ubuntu", "24.04"), ("CUDA", "12.6"), ("Python", "3.12"), ("PyTorch", "2.6.0")
        ),
        "vendor": "nvidia",
        "is_default": False,
    },
    {
        "slug": "jax-0.5-cuda-12.6",
        "name": "JAX",
        "description": "JAX with its CUDA 12 plugin, Flax and Optax in Python 3.12.",
        "versions": _versions(
            ("Ubuntu", "24.04"), ("CUDA", "12.6"), ("Python", "3.12"), ("JAX", "0.5.0")
        ),
        "vendor": "nvidia",
        "is_default": False,
    },
    {
        "slug": "ubuntu-24.04",
        "name": "Ubuntu 24.04",
        "description": "Ubuntu 24.04 LTS with the GPU driver only: install your own stack.",
        "versions": _versions(("Ubuntu", "24.04")),
        "vendor": None,
        "is_default": False,
    },
    {
        "slug": "ubuntu-24.04-rocm-6.3",
        "name": "Ubuntu 24.04 with ROCm",
        "description": "Ubuntu 24.04 LTS with the AMD GPU driver, ROCm 6.3 and MIOpen.",
        "versions": _versions(("Ubuntu", "24.04"), ("ROCm", "6.3"), ("MIOpen", "3.3")),
        "vendor": "amd",
        "is_default": True,
    },
    {
        "slug": "pytorch-2.6-rocm-6.2",
        "name": "PyTorch",
        "description": "PyTorch with torchvision and torchaudio in Python 3.12, on ROCm 6.2.",
        "versions": _versions(
            ("Ubuntu", "24.04"), ("ROCm", "6.2"), ("Python", "3.12"), ("PyTorch", "2.6.0")
        ),
        "vendor": "amd",
        "is_default": False,
    },
]
