// The input image with a canvas over it to paint an inpainting mask: pointer events (mouse, pen, touch),
// a round brush of `brush` screen pixels, `erase` to take paint away. After each stroke (and on clear) it
// emits `change` with {mask: a PNG data: URL of white paint on transparent pixels, or null when nothing
// is painted}. The canvas has the image's aspect ratio, at most 1024 pixels on its long side: the server
// resizes the mask to the job's size.
export default {
  template: `
    <div :style="{ position: 'relative', width: '100%', aspectRatio: ratio, touchAction: painting ? 'none' : 'auto' }">
      <img ref="img" :src="shownSrc" @load="fitCanvas" draggable="false" :alt="alt"
        style="position:absolute;inset:0;width:100%;height:100%;object-fit:fill;user-select:none;border-radius:4px" />
      <canvas ref="canvas" :data-painted="painted ? 'yes' : 'no'"
        :style="{ position: 'absolute', inset: 0, width: '100%', height: '100%', opacity: 0.6,
                  cursor: painting ? 'crosshair' : 'default', pointerEvents: painting ? 'auto' : 'none' }"
        @pointerdown="down" @pointermove="move" @pointerup="up" @pointercancel="up"></canvas>
    </div>
  `,
  props: {
    src: String,
    alt: String,
    brush: { type: Number, default: 24 },
    erase: Boolean,
    painting: Boolean,
  },
  data() {
    return { ratio: "1 / 1", drawing: false, last: null, painted: false, shownSrc: "" };
  },
  watch: {
    src() {
      this.showSource();
    },
  },
  mounted() {
    setTimeout(() => this.showSource(), 0); // window.path_prefix is set once the app is mounted
  },
  methods: {
    showSource() {
      const src = this.src || "";
      this.shownSrc = src.startsWith("/") ? window.path_prefix + src : src;
    },
    fitCanvas() {
      const img = this.$refs.img;
      const canvas = this.$refs.canvas;
      const scale = Math.min(1, 1024 / Math.max(img.naturalWidth, img.naturalHeight));
      this.ratio = `${img.naturalWidth} / ${img.naturalHeight}`;
      canvas.width = Math.max(1, Math.round(img.naturalWidth * scale));
      canvas.height = Math.max(1, Math.round(img.naturalHeight * scale));
      this.painted = false; // a new picture starts without a mask
    },
    point(event) {
      const canvas = this.$refs.canvas;
      const box = canvas.getBoundingClientRect();
      return [(event.clientX - box.left) * (canvas.width / box.width), (event.clientY - box.top) * (canvas.height / box.height)];
    },
    down(event) {
      if (!this.painting || !this.src) return;
      event.preventDefault();
      this.$refs.canvas.setPointerCapture(event.pointerId);
      this.drawing = true;
      this.last = this.point(event);
      this.stroke(this.last, this.last);
    },
    move(event) {
      if (!this.drawing) return;
      const next = this.point(event);
      this.stroke(this.last, next);
      this.last = next;
    },
    up() {
      if (!this.drawing) return;
      this.drawing = false;
      this.send();
    },
    stroke(from, to) {
      const canvas = this.$refs.canvas;
      const context = canvas.getContext("2d");
      context.globalCompositeOperation = this.erase ? "destination-out" : "source-over";
      context.strokeStyle = "#ff2d7a";
      context.lineCap = context.lineJoin = "round";
      context.lineWidth = this.brush * (canvas.width / canvas.getBoundingClientRect().width);
      context.beginPath();
      context.moveTo(from[0], from[1]);
      context.lineTo(to[0] + 0.01, to[1]);
      context.stroke();
    },
    clear() {
      const canvas = this.$refs.canvas;
      canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
      this.painted = false;
      this.$emit("change", { mask: null });
    },
    send() {
      const canvas = this.$refs.canvas;
      const shown = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
      const white = new ImageData(canvas.width, canvas.height);
      let painted = false;
      for (let index = 3; index < shown.data.length; index += 4) {
        const alpha = shown.data[index];
        if (alpha) {
          painted = true;
          white.data[index - 3] = white.data[index - 2] = white.data[index - 1] = 255;
          white.data[index] = alpha;
        }
      }
      this.painted = painted;
      if (!painted) {
        this.$emit("change", { mask: null });
        return;
      }
      const exported = document.createElement("canvas");
      exported.width = canvas.width;
      exported.height = canvas.height;
      exported.getContext("2d").putImageData(white, 0, 0);
      this.$emit("change", { mask: exported.toDataURL("image/png") });
    },
  },
};
