"""Everything ever generated, newest first, paged; kept current in place when any job completes.

The gallery reads pages with `engine.gallery(offset, limit)`, the call `GET /api/gallery` makes, so
images from other tabs and from API clients appear too. It is told
about new images by a hook the page registers with `LiveJobs.completion_hooks`: on the first page the
finished job's thumbnails go on top and the page's last ones drop off (a few elements per open tab);
the page is rebuilt from the store only where its shape changes (first images, another page of pages)
or another page is open.
"""
from __future__ import annotations

from collections.abc import Callable

from nicegui import ui

from app.engine.views import input_urls
from app.protocol import GalleryPage, GenerationComplete, GenerationMetadata

INSET = "padding:0;background:none;top:auto;left:auto;right:4px;bottom:4px;width:34%;height:34%"

LoadPage = Callable[[int, int], GalleryPage]
"""load_page(offset, limit): a page of the gallery, newest first (`engine.gallery`)."""


class Gallery:
    def __init__(
        self,
        load_page: LoadPage,
        on_open: Callable[[str, GenerationMetadata], None],
        page_size: int = 24,
    ) -> None:
        self.load_page = load_page
        self.on_open = on_open
        self.page_size = page_size
        self.page = 1
        self.total = 0
        self.unseen = 0
        self.count_label: ui.label | None = None
        self.grid: ui.element | None = None
        self.thumbnails: dict[str, ui.image] = {}  # image name -> its thumbnail on the open page
        self.render()

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))

    def show_page(self, page: int) -> None:
        self.page = max(1, min(int(page or 1), self.pages))
        if self.page == 1:
            self.unseen = 0
        self.render.refresh()

    def on_new_images(self, event: GenerationComplete | None = None) -> None:
        """A job finished somewhere: show its images now if the first page is open, else count them."""
        if self.page != 1:
            self.unseen += 1
        if self.page != 1 or event is None or not self._put_on_top(event):
            self.render.refresh()

    def _put_on_top(self, event: GenerationComplete) -> bool:
        """Prepend the job's thumbnails to the open first page; False where the page must be rebuilt.

        A full rebuild costs every open tab a store query and a page of thumbnails per finished job;
        this is one thumbnail per image."""
        if self.grid is None or self.count_label is None:
            return False  # no grid yet: the first images replace the empty placeholder
        new = [url for url in event.image_urls if url.rsplit("/", 1)[-1] not in self.thumbnails]
        total = self.total + len(new)
        if -(-total // self.page_size) != self.pages:
            return False  # the pagination changes
        self.total = total
        for url in reversed(new):
            with self.grid:
                thumbnail = self._thumbnail(url.rsplit("/", 1)[-1], url, event.metadata)
            thumbnail.move(self.grid, target_index=0)
        names = {id(thumbnail): name for name, thumbnail in self.thumbnails.items()}
        for dropped in list(self.grid)[self.page_size:]:
            self.thumbnails.pop(names[id(dropped)]).delete()
        self.count_label.set_text(_count_text(self.total))
        return True

    @ui.refreshable_method
    def render(self) -> None:
        page = self.load_page((self.page - 1) * self.page_size, self.page_size)
        items, self.total = page.items, page.total
        self.count_label = self.grid = None
        self.thumbnails = {}
        with ui.row().classes("w-full items-center justify-between"):
            self.count_label = ui.label(_count_text(self.total)).classes("text-sm opacity-70").mark("gallery-count")
            if self.unseen and self.page != 1:
                ui.button("New images", icon="arrow_upward", on_click=lambda: self.show_page(1)) \
                    .props("flat dense no-caps").mark("gallery-new")
        if not items:
            with ui.column().classes("w-full items-center py-10 opacity-60").mark("gallery-empty"):
                ui.icon("photo_library", size="2.5rem")
                ui.label("Your images will gather here.")
            return
        with ui.element("div").classes("w-full grid gap-2 grid-cols-3 sm:grid-cols-4 xl:grid-cols-6").mark("gallery") \
                as self.grid:
            for item in items:
                self._thumbnail(item.name, item.url, item.metadata)
        if self.pages > 1:
            with ui.row().classes("w-full justify-center"):
                ui.pagination(1, self.pages, direction_links=True, value=self.page, on_change=lambda e: self.show_page(e.value)) \
                    .props("max-pages=7 boundary-numbers").mark("gallery-pages")

    def _thumbnail(self, name: str, url: str, metadata: GenerationMetadata) -> ui.image:
        def open_item() -> None:
            self.on_open(url, metadata)

        thumbnail = ui.image(url).props("fit=cover no-transition tabindex=0 role=button") \
            .classes("w-full aspect-square rounded cursor-pointer gallery-thumb") \
            .mark(f"gallery-thumb {name}").on("click", open_item).on("keydown.enter", open_item)
        thumbnail.props["alt"] = thumbnail.props["title"] = metadata.prompt  # no tooltip elements: cheap
        started_from = input_urls(metadata).get("init_image")
        if started_from:  # the picture it started from, small in a corner (one element, only for these)
            with thumbnail:
                ui.image(started_from).props('fit=cover no-transition alt="Input"').style(INSET) \
                    .classes("rounded border border-white shadow").mark("gallery-input")
        self.thumbnails[name] = thumbnail
        return thumbnail


def _count_text(total: int) -> str:
    if total == 0:
        return "No images yet"
    return "1 image" if total == 1 else f"{total} images"
