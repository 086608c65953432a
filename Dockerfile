# Scriptorium for a Hugging Face Space (Docker SDK) or any container host. See docs/deploy.md.
#   docker build -t scriptorium . && docker run --rm -p 7860:7860 scriptorium
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=7860

# Spaces run the container as uid 1000; owning the app directory lets it write nothing else.
RUN useradd --create-home --uid 1000 user
WORKDIR /home/user/app

# The CPU build of torch first, from PyTorch's CPU index (about 200 MB instead of several GB of CUDA libraries).
# requirements.txt pins the same version, which this wheel (2.13.0+cpu) satisfies, so pip keeps it.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY requirements.txt .
RUN pip install -r requirements.txt

# Code and the trained models (models/<name>/), baked into the image.
COPY --chown=user:user . .

USER user
ENV HOME=/home/user
EXPOSE 7860
CMD ["gunicorn", "-c", "gunicorn.conf.py"]
